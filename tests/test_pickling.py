"""Everything Tune pickles survives pickling, for every bundled spec, sampler and scheduler.

Tune pickles the search algorithm and scheduler when it builds the Tuner (``tuner.pkl``) and
the searcher at every experiment snapshot (``Searcher.save``). A library release that adds an
unpicklable attribute (optuna 5.1's ``NSGAIISampler`` holds a lock) must fail here, in
seconds, not in a user's first sweep. No training and no Ray cluster: a trivial trainable.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import ray.cloudpickle

from orchestrator.search.samplers import SAMPLERS, make_sampler
from orchestrator.search.builders import build_scheduler, build_search_alg
from orchestrator.spec import load_spec
from orchestrator.experiment import experiment_dir
from orchestrator.sweep import build_tuner

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))
SCHEDULERS = ("fifo", "asha", "hyperband", "median", "curve")


def trivial(config):
    return {"eval_ce": 1.0}


def variants():
    """(spec file, --set overrides) for every sampler (Optuna specs) and scheduler."""
    for path in SPACES:
        spec = load_spec(path)
        samplers = SAMPLERS if spec.search.algorithm == "optuna" else (None,)
        for sampler in samplers:
            for scheduler in SCHEDULERS:
                sets = [f"scheduler.type={scheduler}"]
                if sampler:
                    sets.append(f"search.sampler={sampler}")
                    if sampler != "cmaes":  # CMA-ES optimises one metric
                        sets.append("search.metric=[eval_ce, miub]")
                if scheduler in ("asha", "median", "curve"):
                    sets.append("scheduler.grace_period=1")
                if scheduler == "curve":  # four evaluations before the last step to fit a curve
                    sets.append("train.eval_every=1")
                yield pytest.param(path, sets, id=f"{path.stem}-{sampler or 'none'}-{scheduler}")


@pytest.mark.parametrize("path,sets", list(variants()))
def test_tuner_and_searcher_pickle(path, sets, tmp_path):
    spec = load_spec(path, sets + [f"results.path={tmp_path / 'results'}"])
    search_alg = build_search_alg(spec)
    build_tuner(spec, trainable=trivial, search_alg=search_alg)  # writes tuner.pkl
    assert (Path(experiment_dir(spec)) / "tuner.pkl").is_file()
    scheduler = build_scheduler(spec)
    assert type(pickle.loads(ray.cloudpickle.dumps(scheduler))) is type(scheduler)
    if search_alg is not None:
        restored = pickle.loads(ray.cloudpickle.dumps(search_alg))
        assert type(restored) is type(search_alg)
        search_alg.save_to_dir(str(tmp_path), session_str="snapshot")  # what a snapshot does
        restored.restore_from_dir(str(tmp_path))


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_pickles_as_its_recipe(name):
    sampler = make_sampler(name, seed=7)
    again = pickle.loads(pickle.dumps(sampler))
    assert type(again) is type(sampler) and again._recipe == (name, 7)
    assert again is not sampler
