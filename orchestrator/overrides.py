"""``--set a.b=value`` command-line overrides applied to a parsed spec document.

Values are parsed as YAML scalars/flow collections, so ``--set lora.rank={grid: [4, 8]}``
and ``--set train.lr=3e-4`` mean what they look like.
"""
from __future__ import annotations

import copy
from typing import Any

import yaml

from orchestrator.errors import UsageError


def parse_value(text: str) -> Any:
    """YAML-parse one override value; ``1e-3`` becomes a float (YAML 1.1 would keep a string)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            return value
    return value


def apply_overrides(document: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Return a copy of ``document`` with each ``dotted.key=value`` set; bad syntax -> UsageError."""
    result = copy.deepcopy(document)
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            problems.append(f"--set {item!r}: expected dotted.key=value, e.g. train.steps=50")
            continue
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"--set {item!r}: {part} is a value, not a section")
                break
            node = child
        else:
            node[parts[-1]] = parse_value(raw.strip())
    if problems:
        raise UsageError(problems)
    return result
