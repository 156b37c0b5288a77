"""Pydantic's validation errors in a spec author's words: one line per problem, naming the
field path, the bad value and what is allowed."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from orchestrator.spec.forms import FORMS, _allowed
from orchestrator.spec.sections import SweepSpec


def describe(err: dict) -> str:
    """One line per pydantic error: field path, bad value, what is allowed."""
    loc = []
    for part in map(str, err["loc"]):
        if part != "value" and not (loc and loc[-1] == part):  # tag and field share a name
            loc.append(part)
    path = ".".join(loc) or "<spec>"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        fields = _section_fields(loc[:-1])
        allowed = f"; allowed: {', '.join(fields)}" if fields else ""
        return f"{path}: unknown key{allowed}"
    if err["type"] == "missing":
        return f"{path}: required, missing"
    if err["type"] == "range_end":
        return f"{path}.{msg}"
    if err["type"] == "union_tag_invalid":
        forms = err.get("ctx", {}).get("expected_tags", ", ".join(FORMS)).replace("'", "")
        return f"{path}: {err['input']!r} is not a plain value or one of the forms {forms}"
    if not loc:  # cross-field problems already name their fields
        return msg
    return f"{path}: {err['input']!r} is not allowed ({_allowed(msg)})"


def _section_fields(loc: list[str]) -> list[str]:
    """The field names of the spec section at ``loc`` (empty if it is not a section)."""
    model: Any = SweepSpec
    for part in loc:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


