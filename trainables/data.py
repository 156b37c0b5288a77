"""Tasks as (prompt, answer) pairs, and their encoding into padded training tensors.

Synthetic tasks are registered by name (``synthetic/<family>``), are deterministic from a
seed, and take a ``complexity`` knob that really changes difficulty. Every task is scored
by exact match of the answer tokens. Train and eval examples never share a prompt.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str


TaskFn = Callable[[random.Random, int], Example]
_TASKS: dict[str, TaskFn] = {}


def register_task(name: str):
    """Register ``fn(rng, complexity) -> Example`` under ``name``; names are unique."""

    def decorator(fn: TaskFn) -> TaskFn:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is already registered")
        _TASKS[name] = fn
        return fn

    return decorator


def task_names() -> list[str]:
    return sorted(_TASKS)


@register_task("synthetic/kv-recall")
def kv_recall(rng: random.Random, complexity: int) -> Example:
    """Recall the value of one key among ``complexity`` key:value pairs in the prompt.

    ``c:41 a:07 k:93|k>`` -> ``93``. More pairs = more distractors and a longer context.
    """
    if not 1 <= complexity <= 26:
        raise ValueError(f"synthetic/kv-recall: complexity {complexity} not allowed (1..26 pairs)")
    keys = rng.sample("abcdefghijklmnopqrstuvwxyz", complexity)
    values = [f"{rng.randrange(100):02d}" for _ in keys]
    query = rng.randrange(complexity)
    context = " ".join(f"{k}:{v}" for k, v in zip(keys, values))
    return Example(prompt=f"{context}|{keys[query]}>", answer=values[query])


def make_splits(
    task: str, train_size: int, eval_size: int, complexity: int, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Draw eval examples first, then train examples whose prompts are not in eval.

    The data seed is separate from the training seed, so every trial of a sweep is
    scored on the same evaluation set.
    """
    if task not in _TASKS:
        raise ValueError(f"unknown task {task!r}; registered: {', '.join(task_names())}")
    fn = _TASKS[task]
    rng = random.Random(f"{task}|{complexity}|{seed}")
    eval_examples, seen = _draw(fn, rng, complexity, eval_size, set())
    train_examples, _ = _draw(fn, rng, complexity, train_size, seen)
    return train_examples, eval_examples


def _draw(fn: TaskFn, rng: random.Random, complexity: int, n: int, exclude: set[str]):
    out, seen = [], set(exclude)
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(
                f"only {len(out)} distinct examples found out of {n} requested at complexity "
                f"{complexity}: the task has too few distinct prompts; lower the size or raise complexity"
            )
        example = fn(rng, complexity)
        if example.prompt not in seen:
            seen.add(example.prompt)
            out.append(example)
    return out, seen


def encode(examples: list[Example], tokenizer, seq_len: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (answer tokens only).

    Raises ValueError naming the needed length when an example does not fit ``seq_len``.
    """
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=True)["input_ids"]
    answers = tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"]
    longest = max(len(p) + len(a) for p, a in zip(prompts, answers))
    if longest > seq_len:
        raise ValueError(f"train.seq_len {seq_len} is too short: examples need up to {longest} tokens")
    n = len(examples)
    input_ids = torch.full((n, seq_len), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, seq_len), dtype=torch.long)
    labels = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        ids = p + a
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, len(p) : len(ids)] = torch.tensor(a)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
