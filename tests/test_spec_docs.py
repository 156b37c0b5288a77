"""docs/spec.md is generated from the spec's models, and every field says what it means."""
from __future__ import annotations

from pathlib import Path

from orchestrator.spec.docs import _sections, render
from orchestrator.spec.sections import SweepSpec

ROOT = Path(__file__).resolve().parents[1]

def test_docs_spec_md_is_what_the_models_render():
    assert (ROOT / "docs" / "spec.md").read_text() == render(), \
        "regenerate: python -m orchestrator.spec.docs > docs/spec.md"

def test_every_field_of_every_section_has_a_description():
    missing = [name for name, f in SweepSpec.model_fields.items() if not f.description]
    for path, model in _sections("", SweepSpec):
        missing += [f"{path}.{name}" for name, f in model.model_fields.items() if not f.description]
    assert missing == []

def test_every_section_and_field_appears_in_the_doc():
    text = render()
    for path, model in _sections("", SweepSpec):
        assert f"## `{path}`" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text
