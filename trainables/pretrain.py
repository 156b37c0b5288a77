"""Brief pretraining of zoo models on a generic synthetic corpus, so LoRA adapts a model
that already knows something (copying, lookup, arithmetic, character statistics).

The corpus uses its own surface formats (``k=93;...?k=93``, ``12+40=52``), never the
fine-tuning tasks' prompt formats, and its own seed namespace, so no fine-tuning example
is seen during pretraining.
"""
from __future__ import annotations

import random
import string

import torch
from tqdm.auto import tqdm

ALPHABET = string.ascii_lowercase + " "


def _markov_line(rng: random.Random, table: dict[str, list[str]], length: int) -> str:
    ch = rng.choice(ALPHABET)
    out = [ch]
    for _ in range(length - 1):
        ch = rng.choice(table[ch])
        out.append(ch)
    return "".join(out)


def _kv_line(rng: random.Random) -> str:
    keys = rng.sample(string.ascii_lowercase, rng.randint(1, 8))
    pairs = {k: f"{rng.randrange(100):02d}" for k in keys}
    q = rng.choice(keys)
    return ";".join(f"{k}={v}" for k, v in pairs.items()) + f"?{q}={pairs[q]}"


def _arith_line(rng: random.Random) -> str:
    a, b = rng.randrange(100), rng.randrange(100)
    return f"{a}+{b}={a + b}" if rng.random() < 0.5 else f"{max(a, b)}-{min(a, b)}={abs(a - b)}"


def _copy_line(rng: random.Random) -> str:
    s = "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(2, 8)))
    return f"{s}|{s}"


def corpus_lines(seed: int):
    """An endless, seeded stream of corpus lines: a mixture of four generic families."""
    rng = random.Random(f"pretrain|{seed}")
    table = {c: rng.choices(ALPHABET, k=6) for c in ALPHABET}  # a sparse character Markov chain
    families = [lambda: _markov_line(rng, table, rng.randint(8, 24)), lambda: _kv_line(rng),
                lambda: _arith_line(rng), lambda: _copy_line(rng)]
    while True:
        yield rng.choice(families)()


def pack_batch(lines, tokenizer, batch_size: int, seq_len: int) -> torch.Tensor:
    """Fill ``batch_size`` rows of exactly ``seq_len`` tokens with newline-separated lines."""
    rows = []
    for _ in range(batch_size):
        ids = [tokenizer.bos_token_id]
        while len(ids) < seq_len:
            ids += tokenizer(next(lines) + "\n", add_special_tokens=False)["input_ids"]
        rows.append(ids[:seq_len])
    return torch.tensor(rows)


def pretrain(model, tokenizer, *, steps: int, batch_size: int, seq_len: int, lr: float, seed: int, label: str) -> list[float]:
    """Full-parameter AdamW with cosine decay; returns the loss curve (one value per step)."""
    torch.manual_seed(seed)
    lines = corpus_lines(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=f"pretraining {label}", unit="step", mininterval=1.0)
    for _ in bar:
        batch = pack_batch(lines, tokenizer, batch_size, seq_len)
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
