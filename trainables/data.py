"""Train/eval splits for a trial and their encoding into padded training tensors.

A task is a registered synthetic family (``synthetic/<family>``, see ``trainables.tasks``)
or real data (``hf:<name>[:<config>]``, ``file:<path>``, see ``trainables.datasets_io``).
Either way a split is a list of (prompt, answer) examples scored by exact match of the
answer tokens, deterministic from the data seed, and train never shares a prompt with eval.
"""
from __future__ import annotations

import random

import torch

from orchestrator.spec.sections import DataSpec
from trainables.datasets_io import Fields, dataset_splits, is_dataset_task
from trainables.tasks import Example, TaskFamily, get_task, register_task, task_names

__all__ = ["Example", "IGNORE_INDEX", "encode", "make_splits", "register_task", "splits_for", "task_names"]

IGNORE_INDEX = -100


def make_splits(
    task: str,
    train_size: int,
    eval_size: int,
    complexity: int,
    seed: int = 0,
    *,
    prompt_field: str = "prompt",
    answer_field: str = "answer",
    text_field: str | None = None,
    split: str = "train",
    eval_split: str | None = None,
) -> tuple[list[Example], list[Example]]:
    """``(train, eval)`` examples for ``task``.

    Synthetic tasks draw eval examples first, then train examples whose prompts are not in
    eval. The data seed is separate from the training seed, so every trial of a sweep is
    scored on the same evaluation set. The keyword arguments apply to ``hf:``/``file:`` data
    only (``complexity`` has no effect there).
    """
    if is_dataset_task(task):
        fields = Fields(prompt=prompt_field, answer=answer_field, text=text_field)
        return dataset_splits(task, train_size, eval_size, seed, fields=fields, split=split, eval_split=eval_split)
    family = get_task(task)
    family.check(complexity)
    rng = random.Random(f"{task}|{complexity}|{seed}")
    eval_examples, seen = _draw(family, rng, complexity, eval_size, set())
    train_examples, _ = _draw(family, rng, complexity, train_size, seen)
    return train_examples, eval_examples


SOURCE_KEYS = ("prompt_field", "answer_field", "text_field", "split", "eval_split")


def splits_for(data: DataSpec) -> tuple[list[Example], list[Example]]:
    """:func:`make_splits` for a trial config's ``data`` section."""
    return make_splits(
        data.task, data.train_size, data.eval_size, data.complexity, data.seed,
        **{k: getattr(data, k) for k in SOURCE_KEYS},
    )


def _draw(family: TaskFamily, rng: random.Random, complexity: int, n: int, exclude: set[str]):
    out, seen = [], set(exclude)
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(
                f"{family.name}: only {len(out)} distinct examples found out of {n} requested at complexity "
                f"{complexity}: the task has too few distinct prompts; lower the size or raise complexity"
            )
        example = family.sample(rng, complexity)
        if example.prompt not in seen:
            seen.add(example.prompt)
            out.append(example)
    return out, seen


def encode(
    examples: list[Example],
    tokenizer,
    seq_len: int,
    *,
    truncation: str = "error",
    chat_template: bool = False,
    split: str = "train",
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (answer tokens only).

    Rows are padded to the longest example (at most ``seq_len``); batches are trimmed further
    to their own longest row (:mod:`trainables.batching`). ``truncation`` says what happens to
    an example longer than ``seq_len``: ``error`` raises ValueError naming the needed length,
    ``left`` drops prompt tokens from the start (a leading BOS is kept). The answer is never
    cut: one that leaves no room for a prompt token is an error naming the example, since the
    first answer token is predicted from the token before it. ``chat_template`` renders each
    prompt as a user turn with the tokenizer's template and its assistant prefix.
    """
    prompts = encode_prompts([e.prompt for e in examples], tokenizer, chat_template=chat_template)
    answers = tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"]
    prompts = [fit_prompt(i, p, a, seq_len, truncation, examples, tokenizer, split) for i, (p, a) in enumerate(zip(prompts, answers))]
    longest = max(len(p) + len(a) for p, a in zip(prompts, answers))
    n = len(examples)
    input_ids = torch.full((n, longest), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, longest), dtype=torch.long)
    labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        ids = p + a
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, len(p) : len(ids)] = torch.tensor(a)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def encode_prompts(prompts: list[str], tokenizer, *, chat_template: bool) -> list[list[int]]:
    """Token ids of each prompt, plain (with the tokenizer's special tokens) or as a chat turn."""
    if not chat_template:
        return tokenizer(prompts, add_special_tokens=True)["input_ids"]
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"data.chat_template is true but the tokenizer of {getattr(tokenizer, 'name_or_path', 'this model')!r} "
            "has no chat template; set data.chat_template: false"
        )
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    # The template writes its own BOS and markers, so no special tokens are added again.
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def fit_prompt(index: int, prompt: list[int], answer: list[int], seq_len: int, truncation: str, examples, tokenizer, split: str) -> list[int]:
    """``prompt`` cut so that prompt + answer fits ``seq_len`` under the truncation policy."""
    need = len(prompt) + len(answer)
    if need <= seq_len:
        return prompt
    where = f"{split} example {index} (prompt {_preview(examples[index].prompt)})"
    if truncation == "error":
        raise ValueError(
            f"train.seq_len {seq_len} is too short: {where} needs {need} tokens; raise train.seq_len or set "
            "data.truncation: left"
        )
    keep_bos = 1 if prompt and prompt[0] == getattr(tokenizer, "bos_token_id", None) else 0
    room = seq_len - len(answer) - keep_bos
    if room < 1:
        raise ValueError(
            f"train.seq_len {seq_len} cannot hold the answer of {where}: its {len(answer)} answer tokens leave no "
            "room for a prompt token; raise train.seq_len"
        )
    return prompt[:keep_bos] + prompt[len(prompt) - room :]


def _preview(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")
