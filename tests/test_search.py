"""Search algorithms, seed replicas and early stopping: unit cases, then real sweeps on Ray."""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from orchestrator.cli import main
from orchestrator.errors import UsageError
from orchestrator.search.samplers import make_sampler
from orchestrator.search.builders import build_scheduler, build_search_alg
from orchestrator.search.study import open_storage, prepare_study
from orchestrator.experiment import experiment_dir, study_file
from orchestrator.search.rules import asha_rungs, replicate_seeds
from orchestrator.search.seeds import PerConfigurationSearch, SeedReplicator, mean_metrics
from orchestrator.spec import load_spec, parse_spec
from orchestrator.store import read_results

ROOT = Path(__file__).resolve().parents[1]
OPTUNA_SPEC = ROOT / "search_spaces" / "optuna_rank_alpha.yaml"
SHORT = ["--set", "train.steps=4", "--set", "train.eval_every=2", "--set", "data.train_size=128",
         "--set", "data.eval_size=32", "--num-cpus", "2"]


class Recorder(Searcher):
    """A stand-in inner searcher: numbered configurations, and every report it receives."""

    def __init__(self, metric="eval_ce", mode="min"):
        super().__init__(metric=metric, mode=mode)
        self.suggested, self.completed, self.space = [], [], None

    def set_search_properties(self, metric, mode, config, **spec):
        self.space = config
        return True

    def suggest(self, trial_id):
        self.suggested.append(trial_id)
        return {"lora": {"rank": len(self.suggested)}}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, result, error))


def replicate(seeds=(0, 1, 2), steps=10, **kw):
    inner = Recorder(**kw)
    return inner, SeedReplicator(inner, list(seeds), steps=steps)


def test_each_configuration_runs_once_per_seed():
    inner, rep = replicate()
    configs = [rep.suggest(f"t{i}") for i in range(6)]
    assert inner.suggested == ["t0", "t3"]  # two configurations asked for, three seeds each
    assert [c["train"]["seed"] for c in configs] == [0, 1, 2, 0, 1, 2]
    assert [c["lora"]["rank"] for c in configs] == [1, 1, 1, 2, 2, 2]


def test_inner_searcher_gets_the_space_without_the_seed_axis():
    inner, rep = replicate()
    space = {"lora": {"rank": tune.choice([1, 2])}, "train": {"seed": tune.choice([0, 1, 2]), "steps": 10}}
    assert rep.set_search_properties(None, None, space)
    assert inner.space["train"] == {"seed": 0, "steps": 10}
    assert isinstance(inner.space["lora"]["rank"], tune.search.sample.Categorical)
    assert isinstance(space["train"]["seed"], tune.search.sample.Categorical)  # caller's space untouched


@pytest.mark.parametrize(
    "outcomes,expected",
    [
        # (error flag, final step, eval_ce) per seed -> what the inner searcher is told
        ([(False, 10, 1.0), (False, 10, 2.0), (False, 10, 6.0)], ("mean", 3.0)),
        ([(False, 10, 1.0), (True, None, None), (False, 10, 2.0)], ("error", None)),
        ([(False, 10, 1.0), (False, 4, 5.0), (False, 10, 2.0)], ("pruned", None)),
        ([(False, 10, 1.0), (False, 10, float("nan")), (False, 10, 2.0)], ("mean", math.nan)),
        ([(False, 10, 1.0), (False, 3, "diverged"), (False, 4, 5.0)], ("error", None)),
    ],
)
def test_seed_outcomes_become_one_report(outcomes, expected):
    inner, rep = replicate()
    ids = [f"t{i}" for i in range(3)]
    for trial_id in ids:
        rep.suggest(trial_id)
    for n, (trial_id, (error, step, ce)) in enumerate(zip(ids, outcomes)):
        result = None if error else {"step": step, "eval_ce": ce, "eval_acc": 0.5}
        if ce == "diverged":
            result.update(eval_ce=float("inf"), diverged=True)
        rep.on_trial_complete(trial_id, result=result, error=error)
        assert len(inner.completed) == (1 if n == 2 else 0)  # told once, when the last seed ends
    (key, result, error), = inner.completed
    assert key == "t0"
    kind, value = expected
    if kind == "mean":
        assert not error and set(result) == {"eval_ce"}
        assert result["eval_ce"] == pytest.approx(value, nan_ok=True)
    else:
        assert result is None and error == (kind == "error")


def test_multi_objective_mean_and_missing_metric():
    assert mean_metrics([{"eval_ce": 1.0, "miub": 0.2}, {"eval_ce": 3.0, "miub": 0.4}], ["eval_ce", "miub"]) == {
        "eval_ce": 2.0, "miub": pytest.approx(0.3)}
    assert math.isnan(mean_metrics([{"eval_ce": 1.0}, {}], "eval_ce")["eval_ce"])
    assert mean_metrics([{"eval_ce": 1.0}], None) == {}


def test_replicator_state_survives_a_restore():
    inner, rep = replicate(seeds=(0, 1))
    rep.suggest("a")
    rep.suggest("b")
    rep.on_trial_complete("a", result={"step": 10, "eval_ce": 1.0})
    state = rep.get_state()
    assert "searcher" not in state
    inner2, rep2 = replicate(seeds=(0, 1))
    rep2.set_state(state)
    rep2.searcher = inner2  # Tune restores wrappers' state and reattaches the base searcher
    rep2.on_trial_complete("b", result={"step": 10, "eval_ce": 3.0})
    assert inner2.completed == [("a", {"eval_ce": 2.0}, False)]


def test_per_configuration_search_multiplies_the_trial_budget():
    spec = parse_spec({"name": "x", "lora": {"rank": {"choice": [1, 2]}}, "search": {"algorithm": "random", "num_samples": 3},
                       "train": {"steps": 10, "eval_every": 5, "seed": {"grid": [0, 1]}}})
    alg = build_search_alg(spec)
    assert isinstance(alg, PerConfigurationSearch) and alg.trials_per_sample == 2
    exp = tune.Experiment("x", lambda config: None, config={}, num_samples=3)
    alg.add_configurations([exp])
    assert alg.total_samples == 6
    limiter = alg.searcher
    assert isinstance(limiter, ConcurrencyLimiter) and limiter.max_concurrent == spec.resources.max_concurrent_trials
    assert isinstance(limiter.searcher, SeedReplicator) and limiter.searcher.seeds == [0, 1]


def test_random_searcher_draws_inside_the_domains():
    spec = parse_spec({"name": "x", "lora": {"rank": {"randint": [1, 4]}, "alpha": {"loguniform": [1, 64]}},
                       "search": {"algorithm": "random"}, "train": {"steps": 10, "eval_every": 5, "seed": {"grid": [0, 1]}}})
    random_searcher = build_search_alg(spec).searcher.searcher.searcher
    random_searcher.set_search_properties(None, None, {"lora": {"rank": tune.randint(1, 5), "alpha": tune.loguniform(1, 64)}})
    draws = [random_searcher.suggest(str(i))["lora"] for i in range(50)]
    assert {d["rank"] for d in draws} <= {1, 2, 3, 4} and len({d["rank"] for d in draws}) > 1
    assert all(1 <= d["alpha"] <= 64 for d in draws)


@pytest.mark.parametrize(
    "search,seed,expected",
    [
        ({"algorithm": "grid"}, {"grid": [0, 1]}, None),  # grid enumerates seeds itself
        ({"algorithm": "random"}, 3, None),  # Tune's own random search
        ({"algorithm": "random"}, {"grid": [0, 1]}, [0, 1]),
        ({"algorithm": "optuna"}, 3, [3]),
        ({"algorithm": "optuna"}, {"grid": [2, 0, 2]}, [2, 0]),
    ],
)
def test_which_search_replicates_seeds(search, seed, expected, tmp_path):
    rank = {"grid": [1, 2]} if search["algorithm"] == "grid" else {"choice": [1, 2]}
    spec = parse_spec({"name": "x", "lora": {"rank": rank}, "search": search, "results": {"path": str(tmp_path)},
                       "train": {"steps": 10, "eval_every": 5, "seed": seed}})
    assert replicate_seeds(spec) == expected
    alg = build_search_alg(spec)
    if expected is None:
        assert alg is None  # Tune's BasicVariantGenerator
    else:
        assert alg.trials_per_sample == len(expected) and alg.searcher.searcher.seeds == expected


@pytest.mark.parametrize("name,cls", [("tpe", "TPESampler"), ("cmaes", "CmaEsSampler"), ("nsga2", "NSGAIISampler")])
def test_samplers(name, cls):
    import optuna

    assert isinstance(make_sampler(name), getattr(optuna.samplers, cls))


def test_optuna_search_is_multi_objective_on_a_journal(tmp_path):
    spec = parse_spec({"name": "mo", "lora": {"rank": {"choice": [1, 2]}}, "train": {"steps": 10, "eval_every": 5},
                       "search": {"algorithm": "optuna", "sampler": "nsga2", "metric": ["eval_ce", "miub"], "mode": "min"},
                       "results": {"path": str(tmp_path)}})
    alg = build_search_alg(spec)
    optuna_search = alg.searcher.searcher.searcher
    assert optuna_search.metric == ["eval_ce", "miub"] and optuna_search.mode == ["min", "min"]
    assert optuna_search._study_name == "mo"
    assert study_file(spec) == tmp_path / "_ray" / "mo" / "optuna.journal"
    assert study_file(spec).is_file()


def test_existing_study_must_match_metrics_and_modes(tmp_path):
    storage = open_storage(tmp_path / "optuna.journal")
    prepare_study(storage, "s", ["eval_ce", "eval_acc"], ["min", "max"])
    prepare_study(storage, "s", ["eval_ce", "eval_acc"], ["min", "max"])  # the same again: fine
    prepare_study(storage, "other", ["eval_ce"], ["min"])  # another study in the journal: fine
    for metrics, modes in ((["eval_ce"], ["min"]), (["eval_ce", "eval_acc"], ["min", "min"]),
                           (["eval_ce", "miub"], ["min", "max"])):
        with pytest.raises(UsageError, match="search.study_name"):
            prepare_study(storage, "s", metrics, modes)


def test_remote_storage_keeps_the_journal_on_the_driver():
    spec = parse_spec({"name": "r", "results": {"path": "/data/res", "storage_path": "s3://bucket/x"}})
    assert experiment_dir(spec) == "s3://bucket/x/r"
    assert study_file(spec) == Path("/data/res/_ray/r/optuna.journal")


def test_asha_counts_steps():
    spec = parse_spec({"name": "a", "train": {"steps": 60, "eval_every": 10},
                       "scheduler": {"type": "asha", "grace_period": 10, "reduction_factor": 2, "metric": "eval_acc", "mode": "max"}})
    sched = build_scheduler(spec)
    assert type(sched).__name__ == "AsyncHyperBandScheduler"
    assert (sched._time_attr, sched._metric, sched._mode, sched._max_t) == ("step", "eval_acc", "max", 60)
    assert asha_rungs(spec) == [10, 20, 40]
    assert type(build_scheduler(parse_spec({"name": "f"}))).__name__ == "FIFOScheduler"


@pytest.mark.parametrize(
    "doc,fragment",
    [
        ({"lora": {"alpha": {"uniform": [1, 8]}}}, "lora.alpha: {uniform: [1.0, 8.0]} cannot be enumerated by search.algorithm grid"),
        ({"search": {"algorithm": "optuna"}, "lora": {"rank": {"grid": [1, 2]}}}, "lora.rank: {grid: [1, 2]} is a grid"),
        ({"search": {"algorithm": "optuna"}}, "'optuna' has nothing to search"),
        ({"search": {"algorithm": "optuna"}, "lora": {"rank": {"choice": [1, 2]}}, "train": {"seed": {"choice": [0, 1]}}},
         "train.seed: {choice: [0, 1]} would make Optuna tune the seed"),
        ({"search": {"metric": ["eval_ce", "miub"], "mode": ["min"]}}, "search.mode: ['min'] has 1 entries"),
        ({"search": {"metric": "eval_ce", "mode": ["min", "max"]}}, "search.mode: ['min', 'max'] has 2 entries"),
        ({"search": {"metric": ["eval_ce", "eval_ce"]}}, "names a metric twice"),
        ({"search": {"metric": "loss"}}, "search.metric: 'loss' is not a reported metric; allowed: eval_ce"),
        ({"search": {"algorithm": "optuna", "sampler": "cmaes", "metric": ["eval_ce", "miub"]}, "lora": {"rank": {"choice": [1, 2]}}},
         "search.sampler: 'cmaes' optimises one metric"),
        ({"scheduler": {"type": "asha", "metric": "accuracy"}}, "scheduler.metric: 'accuracy' is not a reported metric"),
        ({"scheduler": {"type": "asha", "metric": "miub"}, "metrics": {"miub": {"enabled": False}}},
         "scheduler.metric: 'miub' is not reported because metrics.miub.enabled is false"),
        ({"scheduler": {"type": "asha", "grace_period": 10}}, "scheduler.grace_period: 10 is not less than train.steps (10)"),
    ],
)
def test_search_cross_field_problems(doc, fragment):
    full = {"name": "x", "train": {"steps": 10, "eval_every": 5}, **doc}
    with pytest.raises(UsageError) as info:
        parse_spec(full)
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_all_search_problems_are_listed_at_once():
    with pytest.raises(UsageError) as info:
        parse_spec({"name": "x", "train": {"steps": 10, "eval_every": 5},
                    "lora": {"rank": {"grid": [1, 2]}, "alpha": {"uniform": [1, 2]}},
                    "search": {"algorithm": "optuna", "metric": ["eval_ce", "bogus"], "mode": ["min"]},
                    "scheduler": {"type": "asha", "grace_period": 50}})
    text = "\n".join(info.value.problems)
    for field in ("lora.rank", "search.mode", "search.metric: 'bogus'", "scheduler.grace_period"):
        assert field in text


def test_nsga2_with_one_metric_is_allowed():
    spec = parse_spec({"name": "x", "lora": {"rank": {"choice": [1, 2]}}, "train": {"steps": 10, "eval_every": 5},
                       "search": {"algorithm": "optuna", "sampler": "nsga2", "metric": "eval_ce"}})
    assert spec.search.sampler == "nsga2"


# -- real sweeps on embedded Ray ------------------------------------------------------------


def load_study(results: Path, name: str):
    import optuna

    journal = results / "_ray" / name / "optuna.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_optuna_sweep_adds_to_its_study_across_runs(tmp_path, ray_shutdown, capsys):
    """Two runs of one spec: the second adds configurations to the first run's study."""
    results = tmp_path / "results"
    args = ["run", str(OPTUNA_SPEC), *SHORT, "--set", "scheduler.grace_period=2", "--set", "search.num_samples=2",
            "--set", "resources.max_concurrent_trials=2", "--set", f"results.path={results}"]
    assert main(args) == 0
    study = load_study(results, "optuna-rank-alpha")
    first = [t for t in study.trials]
    assert len(first) == 2 and all(t.state.name in ("COMPLETE", "PRUNED") for t in first)
    assert all(t.value is not None and t.intermediate_values for t in first)  # stopped ones too
    assert set(first[0].params) == {"lora/rank", "lora/alpha", "lora/scaling"}

    rows = read_results(results, filter=pc.field("experiment") == "optuna-rank-alpha").to_pylist()
    assert len({r["trial_id"] for r in rows}) == 4  # 2 configurations x 2 seeds
    for t in first:
        if t.state.name == "COMPLETE":  # the study's value is the mean of the seeds' final eval_ce
            mine = [r for r in rows if r["rank"] == t.params["lora/rank"] and r["alpha"] == pytest.approx(t.params["lora/alpha"])]
            last = [r["eval_ce"] for r in mine if r["step"] == 4]
            assert len(last) == 2 and t.value == pytest.approx(sum(last) / 2)

    capsys.readouterr()
    assert main(["run", str(OPTUNA_SPEC), "--dry-run", "--set", f"results.path={results}"]) == 0
    assert "has 2 trials: this run adds to them" in capsys.readouterr().out

    import ray

    ray.shutdown()
    assert main(args) == 2  # rows exist: a second run must say --resume or --append
    assert main([*args, "--append"]) == 0
    study = load_study(results, "optuna-rank-alpha")
    assert len(study.trials) == 4 and [t.number for t in study.trials][:2] == [t.number for t in first]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    rows = read_results(results, filter=pc.field("experiment") == "optuna-rank-alpha")
    assert len(set(rows.column("trial_id").to_pylist())) == 8


@pytest.mark.slow
def test_interrupted_optuna_sweep_resumes_the_same_study(tmp_path, ray_shutdown):
    """Multi-objective NSGA-II, interrupted after its first configuration, then --resume."""
    results = tmp_path / "results"
    journal = results / "_ray" / "mo" / "optuna.journal"
    args = ["run", str(OPTUNA_SPEC), *SHORT, "--set", "name=mo", "--set", "scheduler.type=fifo",
            "--set", "search.sampler=nsga2", "--set", "search.metric=[eval_ce, miub]", "--set", "search.mode=min",
            "--set", "search.num_samples=3", "--set", "resources.max_concurrent_trials=1",
            "--set", f"results.path={results}"]

    def interrupt_after_first_configuration():
        import optuna

        deadline = time.time() + 150
        while time.time() < deadline:
            if journal.exists():
                storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
                try:
                    trials = optuna.load_study(study_name="mo", storage=storage).trials
                except KeyError:
                    trials = []
                if any(t.state.is_finished() for t in trials):
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            time.sleep(0.5)

    watcher = threading.Thread(target=interrupt_after_first_configuration, daemon=True)
    watcher.start()
    assert main(args) == 130  # Tune saves its state on SIGINT; the run says how to continue
    watcher.join()
    study = load_study(results, "mo")
    assert 1 <= sum(t.state.is_finished() for t in study.trials) < 3, "the run should have stopped early"

    import ray

    ray.shutdown()
    assert main([*args, "--resume"]) == 0
    study = load_study(results, "mo")
    assert len(study.trials) == 3, [t.state for t in study.trials]  # same study, no configuration asked twice
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert all(len(t.values) == 2 for t in study.trials)
    rows = read_results(results, filter=pc.field("experiment") == "mo")
    finals = [r for r in rows.to_pylist() if r["step"] == 4]
    assert len(finals) == 6 and {r["status"] for r in finals} == {"completed"}  # 3 configurations x 2 seeds


@pytest.mark.slow
def test_asha_stops_weak_trials_and_their_rows_say_stopped(tmp_path, ray_shutdown):
    """One good learning rate first, then hopeless ones: ASHA stops those at its first rung."""
    results = tmp_path / "results"
    spec = ROOT / "search_spaces" / "quickstart.yaml"
    code = main([
        "run", str(spec), *SHORT, "--set", "train.steps=6", "--set", "lora.rank=8", "--set", "lora.scaling=standard",
        "--set", "train.lr={grid: [3e-2, 1e-7, 1e-7, 1e-7]}", "--set", "resources.max_concurrent_trials=1",
        "--set", "scheduler={type: asha, grace_period: 2, reduction_factor: 2, metric: eval_ce, mode: min}",
        "--set", f"results.path={results}",
    ])
    assert code == 0
    rows = read_results(results).to_pylist()
    by_trial = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r)
    assert len(by_trial) == 4
    last = {t: max(rs, key=lambda r: r["step"]) for t, rs in by_trial.items()}
    stopped = [r for r in last.values() if r["status"] == "stopped"]
    completed = [r for r in last.values() if r["status"] == "completed"]
    assert stopped and completed
    assert all(r["step"] < 6 for r in stopped) and all(r["step"] == 6 for r in completed)
    assert any(r["lr"] == pytest.approx(3e-2) for r in completed)
    for trial_rows in by_trial.values():  # every earlier evaluation of a stopped trial is kept
        assert sorted(r["step"] for r in trial_rows) == list(range(2, max(r["step"] for r in trial_rows) + 1, 2))
