"""Axes computed from the rows rather than read from a column: training FLOPs per trial.

Convention (also in docs/analysis.md). LoRA training FLOPs per token are taken as

    4 * N_frozen + 6 * N_adapter

with ``N_frozen = model_params`` (the base model, frozen) and ``N_adapter =
trainable_params``: the forward pass costs 2 FLOPs per parameter per token; the backward
pass propagates gradients through the activations of every layer (another 2 per frozen
parameter) but computes weight gradients only for the adapter (2 more per adapter
parameter, 6 in all for trainable weights, as in the usual 6N rule). The attention term
(~12 x layers x seq_len x hidden per token, forward and backward) is **omitted**: the
result store has no layer-count, hidden-size or sequence-length column, and for the short
sequences of these studies the term is small next to 4N. A trial's FLOPs are that per-token
figure times ``tokens_seen`` at the trial's selected step (its final or best step), so a
trial stopped early is charged for what it actually trained on.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FROZEN_FLOPS_PER_PARAM = 4.0    # forward 2N + backward through activations 2N
ADAPTER_FLOPS_PER_PARAM = 6.0   # forward 2N + activations 2N + weight gradients 2N
DERIVED = {"train_flops": ("model_params", "trainable_params", "tokens_seen")}


def sources(names) -> list[str]:
    """The stored columns that the requested names need (derived names replaced)."""
    out = []
    for n in names:
        out += list(DERIVED.get(n, (n,)))
    return list(dict.fromkeys(out))


def flops_per_token(model_params, trainable_params):
    """Training FLOPs per token of a LoRA fine-tune (attention omitted; see module doc)."""
    return (FROZEN_FLOPS_PER_PARAM * np.asarray(model_params, dtype=float)
            + ADAPTER_FLOPS_PER_PARAM * np.asarray(trainable_params, dtype=float))


def train_flops(model_params, trainable_params, tokens_seen):
    """Training FLOPs of a trial: flops_per_token x tokens_seen."""
    return flops_per_token(model_params, trainable_params) * np.asarray(tokens_seen, float)


def _num(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(table[name].cast(pa.float64()), np.nan).to_numpy()


def add_derived(table: pa.Table, names) -> pa.Table:
    """Append every derived column among ``names`` that the table does not already have."""
    for name in names:
        if name in DERIVED and name not in table.column_names:
            values = train_flops(*(_num(table, c) for c in DERIVED[name]))
            table = table.append_column(name, pa.array(values, pa.float64()))
    return table
