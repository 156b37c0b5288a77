"""Every ready-made search space validates, dry-runs, says what it studies, and (unless it is
meant for a GPU cluster) stays small enough for a laptop."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.search.rules import replicate_seeds
from orchestrator.spec import load_spec
from orchestrator.spec.trials import expand_grid

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))
EXPECTED = {"quickstart", "miub_rank", "miub_model_size", "miub_data", "rslora_vs_lora", "optuna_rank_alpha",
            "paper_llama3_8b"}
LAPTOP_TRIAL_STEPS = 2000  # trials x steps on zoo models: minutes on 2 CPU cores
# The study's specs (make study) share one budget: well under an hour on 2 CPU cores, where
# 9,000 trial-steps on zoo/llama-xs..m took 4.6 minutes plus 4.4 minutes of pretraining.
STUDY_TRIAL_STEPS = 15_000


def test_the_ready_made_spaces_are_all_there():
    assert EXPECTED <= {p.stem for p in SPACES}


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_space_validates_and_dry_runs(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert ": ok (" in capsys.readouterr().out
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    spec = load_spec(path)
    assert out.startswith(f"{spec.name}: {spec.search.algorithm} search")
    assert f"scheduler: {spec.scheduler.type}" in out
    if spec.search.algorithm == "grid":
        trials = len(expand_grid(spec))
        assert f"{trials} trials x {spec.train.steps} steps" in out
    else:
        seeds = replicate_seeds(spec) or [spec.train.seed]
        assert f"{spec.search.num_samples} configurations x {len(seeds)} seeds per configuration" in out


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_space_has_a_header_saying_what_it_studies(path):
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 2 and len(" ".join(header)) > 120, "start the file with a comment on what it studies"


def trials_of(spec) -> int:
    if spec.search.algorithm == "grid":
        return len(expand_grid(spec))
    return spec.search.num_samples * len(replicate_seeds(spec) or [0])


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_laptop_spaces_stay_small(path):
    spec = load_spec(path)
    configs = expand_grid(spec) if spec.search.algorithm == "grid" else []
    models = {c["model"]["name"] for c in configs} or {spec.model.name}
    if spec.resources.gpus_per_worker > 0:
        assert not any(str(m).startswith("zoo/") for m in models)
        return
    assert all(str(m).startswith("zoo/") for m in models), "a laptop space needs no download"
    assert spec.model.local_files_only
    assert spec.resources.num_workers * spec.resources.cpus_per_worker * spec.resources.max_concurrent_trials <= 2
    if not path.stem.startswith("study_"):
        assert trials_of(spec) * spec.train.steps <= LAPTOP_TRIAL_STEPS


def test_the_study_fits_its_hour():
    studies = [load_spec(p) for p in SPACES if p.stem.startswith("study_")]
    assert {s.name for s in studies} == {"study_rank", "study_model_size", "study_complexity"}
    assert sum(trials_of(s) * s.train.steps for s in studies) <= STUDY_TRIAL_STEPS


def test_paper_space_is_the_gpu_setting():
    spec = load_spec(next(p for p in SPACES if p.stem == "paper_llama3_8b"))
    assert spec.model.name == "meta-llama/Meta-Llama-3-8B" and spec.model.local_files_only is False
    assert spec.deepspeed.zero_stage == 3
    assert (spec.resources.num_workers, spec.resources.gpus_per_worker) == (4, 1)
    assert spec.train.batch_size % spec.resources.num_workers == 0
