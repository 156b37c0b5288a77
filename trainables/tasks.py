"""Synthetic fine-tuning tasks, registered by name, each with a ``complexity`` knob.

A task is ``fn(rng, complexity) -> Example``: everything random comes from ``rng``, so a
split is a pure function of (task, complexity, data seed). Answers are short strings scored
by exact match. Every prompt ends with ``>``, a character the pretraining corpus never
writes, so no fine-tuning prompt can occur in what a zoo model was pretrained on.
"""
from __future__ import annotations

import functools
import random
import string
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str


TaskFn = Callable[[random.Random, int], Example]


@dataclass(frozen=True)
class TaskFamily:
    """A registered task: its sampler and the complexity values it accepts."""

    name: str
    sample: TaskFn
    complexity_range: tuple[int, int]
    complexity_meaning: str

    def check(self, complexity: int) -> None:
        lo, hi = self.complexity_range
        if not isinstance(complexity, int) or not lo <= complexity <= hi:
            raise ValueError(
                f"{self.name}: complexity {complexity!r} not allowed; use an integer in {lo}..{hi} "
                f"({self.complexity_meaning})"
            )


_TASKS: dict[str, TaskFamily] = {}


def register_task(name: str, *, complexity: tuple[int, int] = (1, 2**31 - 1), meaning: str = "difficulty"):
    """Register ``fn(rng, complexity) -> Example`` under ``name``; names are unique.

    ``complexity`` is the inclusive range of accepted values; ``meaning`` says what the
    number counts, for error messages.
    """

    def decorator(fn: TaskFn) -> TaskFn:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is already registered")
        _TASKS[name] = TaskFamily(name, fn, complexity, meaning)
        return fn

    return decorator


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> TaskFamily:
    if name not in _TASKS:
        raise ValueError(
            f"unknown task {name!r}; registered: {', '.join(task_names())} "
            "(or hf:<dataset>[:<config>], file:<path.jsonl|.parquet|.csv>)"
        )
    return _TASKS[name]


@register_task("synthetic/kv-recall", complexity=(1, 26), meaning="number of key:value pairs")
def kv_recall(rng: random.Random, complexity: int) -> Example:
    """Recall the value of one key among ``complexity`` key:value pairs in the prompt.

    ``c:41 a:07 k:93|k>`` -> ``93``. More pairs = more distractors and a longer context.
    """
    keys = rng.sample(string.ascii_lowercase, complexity)
    values = [f"{rng.randrange(100):02d}" for _ in keys]
    query = rng.randrange(complexity)
    context = " ".join(f"{k}:{v}" for k, v in zip(keys, values))
    return Example(prompt=f"{context}|{keys[query]}>", answer=values[query])


@register_task("synthetic/modular-arith", complexity=(2, 999), meaning="modulus")
def modular_arith(rng: random.Random, complexity: int) -> Example:
    """Add two residues modulo ``complexity``: ``(45+96)%97>`` -> ``44``.

    Operands are uniform in [0, m). A larger modulus means more distinct answers with more
    digits and m^2 distinct prompts, so the sum must be computed rather than memorised.
    """
    a, b = rng.randrange(complexity), rng.randrange(complexity)
    return Example(prompt=f"({a}+{b})%{complexity}>", answer=str((a + b) % complexity))


MARKOV_PREFIX = 10  # observed states in a prompt
MARKOV_HORIZON = 3  # predicted states in an answer
MARKOV_FOLLOW = 0.75  # probability that the chain takes its dominant transition


@functools.lru_cache(maxsize=None)
def markov_successors(states: int) -> dict[tuple[str, str], str]:
    """The dominant next state after each pair of states (an order-2 chain on ``states`` letters).

    Fixed by the number of states (its own seed namespace), so every data seed samples walks
    on the same chain and a sweep's seeds differ only in which walks they see.
    """
    letters = string.ascii_lowercase[:states]
    rng = random.Random(f"synthetic/markov|chain|{states}")
    return {(a, b): rng.choice(letters) for a in letters for b in letters}


@register_task("synthetic/markov", complexity=(2, 26), meaning="number of states")
def markov(rng: random.Random, complexity: int) -> Example:
    """Continue a walk on an order-2 Markov chain with ``complexity`` states: ``dbfadbfxdb>`` -> ``fad``.

    The next state depends on the last two: with probability 0.75 it is their dominant
    successor, otherwise a uniformly drawn other state. The prompt is a 10-state sampled walk;
    the answer is the most likely 3-state continuation (dominant transitions from the last two
    states), which is unique, so exact match is meaningful. The model must learn
    ``complexity``^2 transitions: more states mean a bigger table to learn from the same
    data, a higher entropy rate, and less chance that the prompt itself shows the transition.
    """
    succ = markov_successors(complexity)
    letters = string.ascii_lowercase[:complexity]
    walk = [rng.choice(letters), rng.choice(letters)]
    while len(walk) < MARKOV_PREFIX:
        dominant = succ[walk[-2], walk[-1]]
        if rng.random() < MARKOV_FOLLOW:
            walk.append(dominant)
        else:
            walk.append(rng.choice([s for s in letters if s != dominant]))
    path = walk[-2:]
    for _ in range(MARKOV_HORIZON):
        path.append(succ[path[-2], path[-1]])
    return Example(prompt="".join(walk) + ">", answer="".join(path[2:]))
