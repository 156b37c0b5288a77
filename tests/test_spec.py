"""Spec validation: good specs load, bad ones name every problem, the CLI exits 2."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.errors import UsageError
from orchestrator.spec import Grid, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_loads():
    spec = load_spec(ROOT / "search_spaces" / "quickstart.yaml")
    assert spec.name == "quickstart"
    assert isinstance(spec.lora.rank, Grid) and spec.lora.rank.grid == [1, 2, 4, 8, 16]


def test_bad_spec_names_every_field():
    with pytest.raises(UsageError) as info:
        parse_spec({"name": "x", "lora": {"rank": 0, "alpha": "big", "bogus": 1}})
    problems = info.value.problems
    assert len(problems) == 3
    assert any("lora.rank" in p and "0 is not allowed (must be >= 1)" in p for p in problems)
    assert any("lora.alpha" in p and "'big'" in p for p in problems)
    assert any("lora.bogus" in p and "unknown key" in p for p in problems)


def test_value_forms_validate_their_elements():
    with pytest.raises(UsageError) as info:
        parse_spec({"name": "x", "lora": {"rank": {"grid": [4, 0]}, "scaling": {"grid": ["standard", "fancy"]}}})
    text = str(info.value)
    assert "lora.rank.grid.0" not in text and "lora.rank.grid.1" in text
    assert "lora.scaling.grid.1" in text and "must be 'standard' or 'rslora'" in text


def test_unknown_value_form_is_named():
    with pytest.raises(UsageError, match=r"lora.rank: \{'gird': \[1\]\} is not a plain value or one of the forms"):
        parse_spec({"name": "x", "lora": {"rank": {"gird": [1]}}})


def test_cross_field_problem():
    with pytest.raises(UsageError, match="train.eval_every: 500 is more than train.steps"):
        parse_spec({"name": "x", "train": {"steps": 100, "eval_every": 500}})


def test_cli_exit_2_one_line_per_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "lora": {"rank": 0, "alpha": "big", "bogus": 1}}))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("lorasweep: error: ") for line in err)


def test_cli_missing_file_and_bad_yaml(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such spec file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert main(["validate", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_overrides_apply_before_validation(tmp_path, capsys):
    spec = load_spec(ROOT / "search_spaces" / "quickstart.yaml", ["train.steps=40", "lora.rank={grid: [2, 4]}", "train.lr=3e-4"])
    assert spec.train.steps == 40 and spec.lora.rank.grid == [2, 4] and spec.train.lr == pytest.approx(3e-4)
    assert main(["validate", str(ROOT / "search_spaces" / "quickstart.yaml"), "--set", "train.steps"]) == 2
    assert "expected dotted.key=value" in capsys.readouterr().err


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from orchestrator.cli import build_parser; build_parser(); print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
