"""Brief pretraining of zoo models on a generic synthetic corpus, so LoRA adapts a model
that already knows something (character statistics, lookup, arithmetic, induction).

The corpus is a seeded, endless stream of newline-separated lines, a mixture of:

- Markov text: lowercase "words" from a sparse character Markov chain fixed by the seed;
- lookup: ``k=93;a=07?k=93`` (the skill behind ``synthetic/kv-recall``);
- arithmetic: ``12+40=52``, ``52-12=40``, ``141%97=44`` (behind ``synthetic/modular-arith``);
- walks: ``~dbfadbfadb``, a walk that mostly follows a fresh random cycle of letters, so
  continuing it needs in-context induction (behind ``synthetic/markov``);
- copy: ``ab3d|ab3d``.

These are the fine-tuning families' skills in other surface formats: every fine-tuning prompt
ends with ``>``, which the corpus never writes, and the corpus draws from its own seed
namespace (``pretrain|...``), so no fine-tuning example occurs in pretraining.
"""
from __future__ import annotations

import math
import random
import string
from typing import Iterator

import torch
from tqdm.auto import tqdm

MARKOV_ALPHABET = string.ascii_lowercase + " "
LOOKUP_KEYS = string.ascii_lowercase
COPY_ALPHABET = string.ascii_lowercase + string.digits


def _markov_line(rng: random.Random, table: dict[str, list[str]]) -> str:
    ch = rng.choice(MARKOV_ALPHABET)
    out = [ch]
    for _ in range(rng.randint(8, 24) - 1):
        ch = rng.choice(table[ch])
        out.append(ch)
    return "".join(out)


def _lookup_line(rng: random.Random) -> str:
    keys = rng.sample(LOOKUP_KEYS, rng.randint(1, 8))
    pairs = {k: f"{rng.randrange(100):02d}" for k in keys}
    q = rng.choice(keys)
    return ";".join(f"{k}={v}" for k, v in pairs.items()) + f"?{q}={pairs[q]}"


def _arith_line(rng: random.Random) -> str:
    bound = rng.choice([10, 20, 100])  # mostly small operands: facts a tiny model can learn
    a, b = rng.randrange(bound), rng.randrange(bound)
    kind = rng.random()
    if kind < 0.4:
        return f"{a}+{b}={a + b}"
    if kind < 0.7:
        return f"{max(a, b)}-{min(a, b)}={abs(a - b)}"
    m = rng.randint(2, bound)
    n = rng.randrange(2 * m)  # a sum of two residues mod m is below 2m
    return f"{n}%{m}={n % m}"


def _walk_line(rng: random.Random) -> str:
    letters = rng.sample(string.ascii_lowercase, rng.randint(2, 8))
    succ = {s: letters[(i + 1) % len(letters)] for i, s in enumerate(letters)}
    walk = [rng.choice(letters)]
    for _ in range(rng.randint(10, 24) - 1):
        walk.append(succ[walk[-1]] if rng.random() < 0.8 else rng.choice(letters))
    return "~" + "".join(walk)


def _copy_line(rng: random.Random) -> str:
    s = "".join(rng.choices(COPY_ALPHABET, k=rng.randint(2, 8)))
    return f"{s}|{s}"


def corpus_lines(seed: int, stream: str = "train") -> Iterator[str]:
    """An endless stream of corpus lines. ``seed`` fixes the distribution (the Markov-text
    table); ``stream`` picks the draw, so ``"heldout"`` is fresh text from the same distribution."""
    table_rng = random.Random(f"pretrain|{seed}|markov-table")
    table = {c: table_rng.choices(MARKOV_ALPHABET, k=6) for c in MARKOV_ALPHABET}
    rng = random.Random(f"pretrain|{seed}|{stream}")
    families = [lambda: _markov_line(rng, table), lambda: _markov_line(rng, table), lambda: _lookup_line(rng),
                lambda: _arith_line(rng), lambda: _walk_line(rng), lambda: _copy_line(rng)]
    while True:
        yield rng.choice(families)()


class PackedRows:
    """Rows of exactly ``seq_len`` tokens cut from one stream of newline-joined lines, each
    row starting with BOS; a line cut at a row's end continues in the next row."""

    def __init__(self, lines: Iterator[str], tokenizer, seq_len: int):
        self.lines, self.tokenizer, self.seq_len = lines, tokenizer, seq_len
        self.buffer: list[int] = []

    def batch(self, batch_size: int) -> torch.Tensor:
        body = self.seq_len - 1
        need = batch_size * body
        while len(self.buffer) < need:
            chunk = [next(self.lines) + "\n" for _ in range(64)]
            for ids in self.tokenizer(chunk, add_special_tokens=False)["input_ids"]:
                self.buffer += ids
        rows = [[self.tokenizer.bos_token_id] + self.buffer[i * body : (i + 1) * body] for i in range(batch_size)]
        del self.buffer[:need]
        return torch.tensor(rows)


def lr_factor(step: int, steps: int, warmup_frac: float = 0.05, floor: float = 0.1) -> float:
    """Linear warmup over the first 5% of steps, then cosine decay to 10% of the peak."""
    warmup = max(1, int(warmup_frac * steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def pretrain(model, tokenizer, *, steps: int, batch_size: int, seq_len: int, lr: float, seed: int,
             label: str) -> list[float]:
    """Full-parameter AdamW with a short warmup and cosine decay; returns the loss per step."""
    torch.manual_seed(seed)
    rows = PackedRows(corpus_lines(seed, "train"), tokenizer, seq_len)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps))
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=f"pretraining {label}", unit="step", mininterval=1.0)
    for _ in bar:
        batch = rows.batch(batch_size)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return losses


@torch.no_grad()
def heldout_ce(model, tokenizer, *, seed: int, batches: int = 8, batch_size: int = 16, seq_len: int = 128) -> float:
    """Mean next-token CE (nats) on fresh corpus text of the distribution ``seed`` trained on."""
    rows = PackedRows(corpus_lines(seed, "heldout"), tokenizer, seq_len)
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(batches):
        batch = rows.batch(batch_size)
        total += model(input_ids=batch, labels=batch).loss.item()
    model.train(was_training)
    return total / batches
