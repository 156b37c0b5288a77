"""Reading a spec: YAML file -> ``--set`` overrides -> :class:`SweepSpec` -> preflight.

Every problem in a file is collected into one :class:`~orchestrator.errors.UsageError`, one
line per problem. This module never imports Ray or torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import UsageError
from orchestrator.spec.overrides import override_document
from orchestrator.spec.preflight import trial_problems
from orchestrator.spec.sections import SweepSpec
from orchestrator.spec.wording import describe
from orchestrator.spec.yaml_io import load_yaml


def parse_spec(document: Any, source: str = "<spec>", *, problems: list[str] = ()) -> SweepSpec:
    """Validate a parsed YAML document, then what its trials will need (tasks, zoo models,
    files, estimators: :mod:`orchestrator.spec.preflight`); raise UsageError listing every problem.
    ``problems`` are earlier ones (bad ``--set`` flags) to report with these."""
    lines = list(problems)
    if not isinstance(document, dict):
        raise UsageError(lines + [f"{source}: a sweep spec must be a mapping, got {type(document).__name__}"])
    try:
        spec = SweepSpec.model_validate(document)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            lines.extend(f"{source}: {line}" for line in describe(err).splitlines())
        raise UsageError(list(dict.fromkeys(lines))) from None
    lines += [f"{source}: {line}" for line in trial_problems(spec)]
    if lines:
        raise UsageError(lines)
    return spec


def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """Read a YAML spec, apply ``a.b=value`` overrides, validate."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a spec file (e.g. search_spaces/quickstart.yaml)")
    if not path.is_file():
        raise UsageError(f"{path}: no such spec file")
    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); a spec is a YAML file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise UsageError(f"{path}: a sweep spec must be a mapping, got {type(document).__name__}")
    document, problems = override_document(document, overrides)
    return parse_spec(document, source=str(path), problems=problems)
