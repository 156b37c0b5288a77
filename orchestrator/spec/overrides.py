"""``--set a.b=value`` command-line overrides applied to a parsed spec document.

Values are parsed as YAML scalars/flow collections (by the spec's own loader), so
``--set lora.rank={grid: [4, 8]}`` and ``--set train.lr=3e-4`` mean what they look like.
"""
from __future__ import annotations

import copy
from typing import Any

import yaml

from orchestrator.errors import UsageError
from orchestrator.spec.yaml_io import load_yaml


def parse_value(text: str) -> Any:
    """YAML-parse one override value (``3e-4`` is a float); text that is not YAML stays text."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def apply_overrides(document: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Return a copy of ``document`` with each ``dotted.key=value`` set; bad syntax -> UsageError."""
    result, problems = override_document(document, overrides)
    if problems:
        raise UsageError(problems)
    return result


def override_document(document: dict, overrides: list[str] | tuple[str, ...]) -> tuple[dict, list[str]]:
    """A copy of ``document`` with each well-formed override set, and one problem line per
    malformed one (so that they can be reported together with the spec's own problems)."""
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
    return result, problems
