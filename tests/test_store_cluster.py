"""Storage on a cluster: URI defaults for Tune's storage, the relative-path refusal inside a
Ray job, the Optuna journal's copy on S3, the commit from the job's environment, and the
shared-storage check across the nodes of a real two-node Ray cluster."""
from __future__ import annotations


import pytest

from orchestrator.errors import UsageError
from orchestrator.experiment import experiment_dir, results_location, storage_path, study_backup, study_file
from orchestrator.spec import parse_spec
from orchestrator.store.journal import restore_journal, upload_journal
from orchestrator.store.shared_check import check_durable, check_shared, local_paths

from s3_server import s3_server  # noqa: F401  (the fixture)


def _spec(**results):
    return parse_spec({"name": "r", "search": {"algorithm": "grid"}, "results": results})


def test_a_uri_results_path_puts_tunes_storage_beside_it_as_a_uri():
    spec = _spec(path="s3://bucket/lorasweep/results/")
    assert results_location(spec) == "s3://bucket/lorasweep/results"
    assert storage_path(spec) == "s3://bucket/lorasweep/results/_ray"
    assert experiment_dir(spec) == "s3://bucket/lorasweep/results/_ray/r"
    assert study_backup(spec) == "s3://bucket/lorasweep/results/_ray/r/optuna.journal"
    local = study_file(spec)
    assert local.is_absolute() and local.name == "optuna.journal" and "://" not in str(local)
    assert storage_path(_spec(path="file:///data/res")) == "/data/res/_ray"
    assert study_backup(_spec(path="/data/res")) is None


def test_relative_results_path_is_refused_inside_a_ray_job(monkeypatch):
    spec = _spec(path="results")
    check_durable(spec)  # outside a job: fine
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    with pytest.raises(UsageError) as caught:
        check_durable(spec)
    (line,) = caught.value.problems
    assert line.startswith("results.path: 'results' is relative") and "s3://" in line
    check_durable(_spec(path="/mnt/shared/results"))
    check_durable(_spec(path="s3://bucket/results"))


def test_git_commit_comes_from_the_jobs_environment(monkeypatch):
    from orchestrator import environment

    environment.git_commit.cache_clear()
    monkeypatch.setenv("LORASWEEP_GIT_COMMIT", "0123abcd" * 5)
    try:
        assert environment.environment_columns()["git_commit"] == "0123abcd" * 5
    finally:
        environment.git_commit.cache_clear()


def test_journal_copy_round_trips_through_s3_and_the_longer_file_wins(s3_server, tmp_path):
    import optuna

    from orchestrator.search.study import open_storage

    local = tmp_path / "head-1" / "optuna.journal"
    uri = s3_server.uri("res", "_ray", "r", "optuna.journal")
    storage = open_storage(local, backup=uri)  # nothing stored yet: a fresh journal
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1) ** 2, n_trials=3)
    assert upload_journal(local, uri) == local.stat().st_size > 0

    fresh = tmp_path / "head-2" / "optuna.journal"  # a new head node: no local journal
    restored = optuna.load_study(study_name="s", storage=open_storage(fresh, backup=uri))
    assert len(restored.trials) == 3 and fresh.read_bytes() == local.read_bytes()
    fresh.write_bytes(local.read_bytes() + b"\n")  # the local file is longer: it is kept
    assert restore_journal(fresh, uri) is False
    assert restore_journal(tmp_path / "none", s3_server.uri("missing.journal")) is False


def test_local_paths_lists_the_storage_a_cluster_must_share(tmp_path):
    spec = _spec(path=str(tmp_path / "res"), storage_path="s3://bucket/ray")
    assert local_paths(spec) == [str(tmp_path / "res")]
    assert local_paths(_spec(path=str(tmp_path / "res"))) == [str(tmp_path / "res"), str(tmp_path / "res" / "_ray")]


@pytest.mark.slow
def test_shared_check_passes_on_a_shared_disk_and_names_a_node_that_cannot_see(tmp_path, ray_shutdown):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        shared = tmp_path / "shared"
        check_shared([str(shared)])  # both nodes are on this machine's disk: they see it
        assert not (shared / ".lorasweep-shared-check").exists()  # the markers are cleaned up

        # A path only one node sees: the other node's view is made blind by removing what the
        # driver wrote before that node's probe reads it (as a node-local disk would).
        import orchestrator.store.shared_check as module

        original = module._probe
        blind_node = worker.node_id

        def probe_on_a_node_with_its_own_disk(directory, token):
            import ray as ray_inside

            import orchestrator.store.shared_check as inside

            if ray_inside.get_runtime_context().get_node_id() == blind_node:
                return False  # this node's filesystem does not hold the driver's marker
            return inside._probe(directory, token)

        module._probe = probe_on_a_node_with_its_own_disk
        try:
            with pytest.raises(UsageError) as caught:
                check_shared([str(shared)])
        finally:
            module._probe = original
        (line,) = caught.value.problems
        assert line.startswith(f"{shared}: not visible from every node") and worker.node_id[:12] in line
        assert cluster.head_node.node_id[:12] not in line
    finally:
        ray.shutdown()
        cluster.shutdown()
