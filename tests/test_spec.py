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


# -- YAML as written, files that cannot be specs, every problem at once ----------------------


def test_yaml_1_2_floats_and_duplicate_keys(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ntrain: {lr: 1e-3, steps: 10, eval_every: 5}\n")
    assert load_spec(spec).train.lr == 1e-3
    spec.write_text("name: s\ntrain: {steps: 10}\ntrain: {steps: 20}\n")
    assert main(["validate", str(spec)]) == 2
    assert "duplicate key 'train'" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"- a\n- b\n", "a sweep spec must be a mapping, got list"),
    (b"name: caf\xe9\n", "not UTF-8 text"),
])
def test_files_that_are_no_spec_exit_2_even_with_overrides(tmp_path, capsys, content, message):
    spec = tmp_path / "s.yaml"
    spec.write_bytes(content)
    assert main(["validate", str(spec), "--set", "train.steps=3"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["validate", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_unknown_and_missing_keys_say_what_is_allowed():
    with pytest.raises(UsageError) as info:
        parse_spec({"lora": {"bogus": 1}})
    assert info.value.problems == [
        "<spec>: name: required, missing",
        "<spec>: lora.bogus: unknown key; allowed: rank, alpha, scaling, target_modules, dropout",
    ]


def test_bad_overrides_are_reported_with_the_spec_problems(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nlora: {rank: 0}\n")
    assert main(["validate", str(spec), "--set", "train.steps", "--set", "lora.alpha=-1"]) == 2
    err = capsys.readouterr().err
    assert "expected dotted.key=value" in err and "lora.rank: 0 is not allowed" in err and "lora.alpha: -1" in err


# -- what the trials will need, checked before Ray starts ------------------------------------


def test_what_trials_need_is_checked_before_ray(tmp_path):
    with pytest.raises(UsageError) as info:
        parse_spec({
            "name": "x",
            "model": {"name": {"grid": ["zoo/llama-xs", "zoo/llama-xxl"]}},
            "data": {"task": {"grid": ["synthetic/kv-recall", "synthetic/kv-recal", f"file:{tmp_path}/none.jsonl"]},
                     "complexity": {"grid": [4, 100]}},
            "deepspeed": {"config": str(tmp_path / "ds.json")},
        })
    problems = "\n".join(info.value.problems)
    assert "model.name: unknown zoo model 'zoo/llama-xxl'; available: zoo/llama-xs" in problems
    assert "data.task: unknown task 'synthetic/kv-recal'" in problems
    assert f"no such file '{tmp_path}/none.jsonl'" in problems
    assert "data.complexity: synthetic/kv-recall: complexity 100 not allowed; use an integer in 1..26" in problems
    assert "deepspeed.config:" in problems and "is not a file" in problems
    assert len(info.value.problems) == 5


def test_estimators_are_looked_up_after_their_modules_are_imported(tmp_path, monkeypatch):
    from trainables import miub

    with pytest.raises(UsageError, match=r"metrics.miub.estimators: unknown MIUB estimator 'cosine_toy'"):
        parse_spec({"name": "x", "metrics": {"miub": {"estimator": "cosine_toy"}}})
    (tmp_path / "toy_estimators.py").write_text(
        "import torch\n"
        "from trainables.miub import Estimator, register_estimator\n"
        "@register_estimator('cosine_toy')\n"
        "class CosineToy(Estimator):\n"
        "    def batch_stats(self, h, g, mask):\n"
        "        c = torch.nn.functional.cosine_similarity(h, g, dim=-1)[mask.bool()]\n"
        "        return torch.stack([c.sum().double(), torch.tensor(float(c.numel()), dtype=torch.float64)])\n"
        "    def finalize(self, stats):\n"
        "        return (stats[0] / stats[1]).item()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = parse_spec({"name": "x", "metrics": {"miub": {"estimator": "cosine_toy", "imports": ["toy_estimators"]}}})
        assert spec.metrics.miub.imports == ["toy_estimators"]
    finally:
        miub._REGISTRY.pop("cosine_toy", None)
    with pytest.raises(UsageError, match=r"metrics.miub.imports: 'no_such_module_xyz' cannot be imported"):
        parse_spec({"name": "x", "metrics": {"miub": {"imports": ["no_such_module_xyz"]}}})
