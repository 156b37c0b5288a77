"""A user's DeepSpeed JSON config, honoured field by field.

A config may use Hugging Face-style ``"auto"`` values: each is resolved from the spec, and
:func:`resolve` says which it set. A field the spec decides (batch sizes, accumulation,
learning rate, clipping, ZeRO stage, precision) given a different concrete value is an error
naming the field: lorasweep never overrides a user's value silently. Everything else in the
file (offload, bucket sizes, communication settings) is passed to DeepSpeed as written.
"""
from __future__ import annotations

import json
from pathlib import Path


class ConfigConflict(ValueError):
    pass


# Dotted field -> the spec setting that decides it.
DECIDED_BY = {
    "train_micro_batch_size_per_gpu": "train.batch_size / workers (per micro-batch)",
    "gradient_accumulation_steps": "the spec's gradient accumulation",
    "train_batch_size": "train.batch_size",
    "gradient_clipping": "train.grad_clip",
    "optimizer.params.lr": "train.lr",
    "zero_optimization.stage": "deepspeed.zero_stage",
}


def resolve(user: dict, decided: dict, source: str = "deepspeed.config") -> tuple[dict, list[str]]:
    """``user`` with every spec-decided field set from ``decided`` (dotted keys); returns the
    config and one note per ``"auto"`` it resolved. Raises ConfigConflict on a concrete value
    that differs from the spec's."""
    config = json.loads(json.dumps(user))
    notes, problems = [], []
    for dotted, value in decided.items():
        present, current = _get(config, dotted)
        if present and current == "auto":
            notes.append(f"{source}: {dotted} \"auto\" -> {value!r}")
        elif present and current != value:
            problems.append(f"{source}: {dotted} is {current!r} but {DECIDED_BY.get(dotted, 'the spec')} gives "
                            f"{value!r}; allowed: \"auto\", the same value, or leave it out")
        _set(config, dotted, value)
    for leftover in _autos(config):
        problems.append(f"{source}: {leftover} is \"auto\", which lorasweep cannot resolve; allowed: a value")
    if problems:
        raise ConfigConflict("\n".join(problems))
    return config, notes


def user_precision(user: dict) -> str | None:
    """The precision a user config asks for, if it enables one (``"auto"`` counts as unset)."""
    for name, precision in (("bf16", "bf16"), ("fp16", "fp16")):
        enabled = user.get(name, {}).get("enabled") if isinstance(user.get(name), dict) else None
        if enabled is True:
            return precision
    return None


def load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(config: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _autos(node, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _autos(value, f"{prefix}{key}.")
    elif node == "auto":
        yield prefix.rstrip(".")
