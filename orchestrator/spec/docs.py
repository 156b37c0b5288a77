"""``docs/spec.md``'s field tables, generated from the section models' descriptions.

Nothing about a field is written twice: its type, default and meaning come from
:mod:`orchestrator.spec.sections`, and a test checks that the doc holds what this renders.
Regenerate with ``python -m orchestrator.spec.docs > docs/spec.md``.
"""
from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from orchestrator.spec.sections import SweepSpec

INTRO = """# Sweep spec reference

A sweep is one YAML file (see `search_spaces/`). Every field below is optional unless its
default says *required*; `lorasweep validate SPEC` checks a file without running it, and
`--set section.field=value` overrides a field on the command line. A field marked
*searchable* also takes one of the value forms `{grid: [...]}`, `{choice: [...]}` and, where
listed, `{randint: [lo, hi]}` (integers, inclusive) or `{uniform: [lo, hi]}` /
`{loguniform: [lo, hi]}` (reals). Numbers are strict: `"16"` (text) is not 16.

This page is generated from the spec's models (`python -m orchestrator.spec.docs > docs/spec.md`);
a test keeps it in sync.
"""


def _type_text(annotation: Any) -> str:
    """A short, readable type: ``int``, ``'fifo' | 'asha'``, ``list of str``, searchable forms."""
    text = repr(annotation)
    forms = sorted(set(re.findall(r"Tag\(tag='(\w+)'\)", text)) - {"value", "grid", "choice"})
    if "Tag(tag='grid')" in text:
        scalar = typing.get_args(typing.get_args(annotation)[0])[0]
        base = _plain_type(typing.get_args(scalar)[0])
        return f"{base}, searchable" + (f" ({', '.join(forms)})" if forms else "")
    return _plain_type(annotation)


def _plain_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _plain_type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join("null" if a is type(None) else _plain_type(a) for a in args)
    if origin is list:
        return f"list of {_plain_type(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(field) -> str:
    if field.is_required():
        return "*required*"
    value = field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|")


def _section_table(name: str, model: type[BaseModel]) -> list[str]:
    lines = [f"## `{name}`", "", (model.__doc__ or "").strip(), "",
             "| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for field_name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"| `{field_name}` | section | | {_cell(field.description)} (see `{name}.{field_name}`) |")
            continue
        lines.append(f"| `{field_name}` | {_type_text(field.rebuild_annotation())} | {_default_text(field)} "
                     f"| {_cell(field.description)} |")
    return lines + [""]


def _sections(prefix: str, model: type[BaseModel]):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            path = f"{prefix}{name}"
            yield path, annotation
            yield from _sections(path + ".", annotation)


def render() -> str:
    """The whole of docs/spec.md."""
    lines = [INTRO, "## Top level", "", "| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in SweepSpec.model_fields.items():
        kind = "section" if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else \
            _type_text(field.rebuild_annotation())
        lines.append(f"| `{name}` | {kind} | {_default_text(field)} | {_cell(field.description)} |")
    lines.append("")
    for path, model in _sections("", SweepSpec):
        lines += _section_table(path, model)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
