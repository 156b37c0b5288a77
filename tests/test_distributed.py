"""Several workers per trial, resource requests, and trials spread over (simulated) nodes."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from orchestrator.spec import load_spec, parse_spec
from orchestrator.spec.trial_config import TrialConfig
from orchestrator.spec.trials import expand_grid
from orchestrator.sweep import trial_resources
from trainables.multiworker import scaling_config

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


def test_gpu_requests_reach_ray():
    """No GPU here, so inspect what lorasweep asks Ray for."""
    from ray import tune

    single = parse_spec({"name": "g", "resources": {"gpus_per_worker": 1, "cpus_per_worker": 4}})
    wrapped = tune.with_resources(lambda config: None, trial_resources(single))
    assert wrapped._resources.bundles == [{"CPU": 4.0, "GPU": 1.0}]

    spread = parse_spec({"name": "g", "data": {"eval_size": 256}, "train": {"batch_size": 16},
                         "resources": {"num_workers": 4, "cpus_per_worker": 8, "gpus_per_worker": 1,
                                       "placement_strategy": "SPREAD"}})
    scaling = scaling_config(TrialConfig.model_validate(expand_grid(spread)[0]))
    assert scaling.use_gpu and scaling.num_workers == 4
    factory = scaling.as_placement_group_factory()
    assert factory.bundles == [{"CPU": 8.0, "GPU": 1.0}] * 4 and factory.strategy == "SPREAD"
    multi = parse_spec({"name": "g", "resources": {"num_workers": 4, "gpus_per_worker": 1}})
    assert trial_resources(multi) == {"cpu": 0.01}  # the trial's workers hold the GPUs


def _spec(tmp_path, name, *overrides):
    return load_spec(QUICKSTART, [f"name={name}", f"results.path={tmp_path / 'results'}", *overrides])


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_two_workers_match_one_worker(tmp_path, ray_local, stage):
    """Same global batch and seed: 2 gloo workers report what 1 worker reports, under ZeRO-2
    and under ZeRO-3 (where saving the adapter gathers its shards from both workers)."""
    from orchestrator import sweep
    from orchestrator.store import read_results

    common = ["lora.rank=4", "lora.scaling=standard", "train.steps=40", f"deepspeed.zero_stage={stage}",
              "resources.cpus_per_worker=0.5"]
    finals = {}
    for workers in (1, 2):
        spec = _spec(tmp_path, f"w{workers}", *common, f"resources.num_workers={workers}")
        sweep.run(spec)
        rows = read_results(spec.results.path).to_pylist()
        finals[workers] = {r["step"]: r for r in rows if r["experiment"] == f"w{workers}"}
        assert {r["status"] for r in rows if r["experiment"] == f"w{workers}"} == {"running", "completed"}
    assert sorted(finals[1]) == sorted(finals[2]) == [20, 40]
    for step in (20, 40):
        one, two = finals[1][step], finals[2][step]
        assert two["num_workers"] == 2 and one["num_workers"] == 1
        # Tolerance: float32 gradient all-reduce order differs between 1 and 2 workers.
        assert two["eval_ce"] == pytest.approx(one["eval_ce"], rel=1e-5)
        assert two["eval_acc"] == one["eval_acc"]
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
        assert two["tokens_seen"] == one["tokens_seen"]
        assert two["miub"] == pytest.approx(one["miub"], abs=1e-6)
        for name, value in one["miub_layers"]:
            assert dict(two["miub_layers"])[name] == pytest.approx(value, abs=1e-6)


@pytest.mark.slow
def test_trials_use_both_nodes_and_survive_losing_one(tmp_path, ray_shutdown):
    """A 2-node cluster: trials land on both nodes; killing the worker node mid-trial makes
    its trial resume from its checkpoint on the head node and complete, one row per step."""
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator import sweep
    from orchestrator.store import read_results
    from orchestrator.store.compact import compact

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    try:
        worker_id = worker.node_id[:8]
        spec = _spec(
            tmp_path, "nodes", "lora.rank={grid: [2, 8]}", "lora.scaling=standard",
            "train.steps=200", "train.eval_every=20", "results.flush_rows=1", "failures.max_failures=3",
        )
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.setdefault("grid", sweep.run(spec)), daemon=True)
        runner.start()
        removed = False
        deadline = time.monotonic() + 400
        while runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.5)
            if removed:
                continue
            try:
                rows = read_results(spec.results.path).to_pylist()
            except Exception:
                continue
            if any(worker_id in (r["node"] or "") for r in rows):
                cluster.remove_node(worker, allow_graceful=False)
                removed = True
        runner.join(timeout=60)
        assert removed, "no trial ever reported from the worker node"
        assert not runner.is_alive()
        rows = read_results(spec.results.path).to_pylist()
        by_trial: dict[str, list[dict]] = {}
        for r in rows:
            by_trial.setdefault(r["trial_id"], []).append(r)
        assert len(by_trial) == 2
        moved = [t for t, rs in by_trial.items() if any(worker_id in r["node"] for r in rs)]
        assert len(moved) == 1
        moved_rows = sorted(by_trial[moved[0]], key=lambda r: r["step"])
        assert [r["step"] for r in moved_rows] == list(range(20, 201, 20))
        assert moved_rows[-1]["status"] == "completed"
        assert worker_id not in moved_rows[-1]["node"]  # finished elsewhere
        assert max(r["attempt"] for r in moved_rows) >= 2
        raw = ds.dataset(spec.results.path, partitioning="hive").to_table().to_pylist()  # no deduplication
        keys = [(r["trial_id"], r["step"], r["attempt"]) for r in raw]
        assert len(keys) == len(set(keys)), "an attempt wrote a step twice"
        compact(spec.results.path)
        after = ds.dataset(spec.results.path, partitioning="hive").to_table().to_pylist()
        assert len(after) == len({(r["trial_id"], r["step"]) for r in after}) == 20
        # Resumed from its checkpoint, not from scratch: tokens keep growing step by step.
        tokens = [r["tokens_seen"] for r in moved_rows]
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    finally:
        ray.shutdown()
        cluster.shutdown()
