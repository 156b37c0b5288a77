"""Checks of the cluster configs in cluster/: Ray launcher YAMLs and the KubeRay manifest.

Launcher configs go through what `ray up` does before it touches a cloud:
`prepare_config` (provider defaults, merged setup commands, per-type worker counts) and
then Ray's own schema check, `validate_config`. The step in between, where `ray up` asks
the cloud for instance shapes to fill missing `resources`, is skipped: every node type
here declares its resources, and `test_declared_resources_match_the_instance_shape`
checks them against the instance types instead.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_DIR = Path(__file__).resolve().parent.parent / "cluster"
ALL_YAMLS = sorted(CLUSTER_DIR.glob("*.yaml"))


def _load(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


# A KubeRay manifest has a Kubernetes `kind`; a launcher config never does.
LAUNCHER_YAMLS = [p for p in ALL_YAMLS if "kind" not in _load(p)]
KUBERAY_YAMLS = [p for p in ALL_YAMLS if _load(p).get("kind") == "RayCluster"]

# (vCPUs, GPUs) of every instance type the configs use, from the providers' specs.
INSTANCE_SHAPES = {
    "g5.xlarge": (4, 1),
    "g5.12xlarge": (48, 4),
    "p4d.24xlarge": (96, 8),
    "n1-standard-8": (8, 0),  # GPUs come from guestAccelerators
    "a2-highgpu-1g": (12, 1),
    "a2-highgpu-8g": (96, 8),
}

INSTALL_LORASWEEP = re.compile(r"\bpip install\b.*\s-e\s+~/lorasweep\s*$")
PINNED_RAY = f'pip install "ray[default]=={ray.__version__}"'


def _prepared(path: Path) -> dict:
    return prepare_config(copy.deepcopy(_load(path)))


def _ids(paths):
    return [p.name for p in paths]


def test_every_cluster_file_is_classified():
    names = {p.name for p in ALL_YAMLS}
    assert {"aws.yaml", "gcp.yaml", "local.yaml", "kuberay.yaml"} <= names
    assert {p.name for p in KUBERAY_YAMLS} == {"kuberay.yaml"}
    assert set(LAUNCHER_YAMLS) | set(KUBERAY_YAMLS) == set(ALL_YAMLS)


# ---------------------------------------------------------------- launcher configs


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=_ids(LAUNCHER_YAMLS))
def test_launcher_config_passes_ray_schema(path):
    config = _prepared(path)
    validate_config(config)  # raises jsonschema.ValidationError / ValueError if invalid
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=_ids(LAUNCHER_YAMLS))
@pytest.mark.parametrize(
    "where", ["top level", "node type"], ids=["top-level-key", "node-type-key"]
)
def test_unknown_key_is_rejected(path, where):
    config = _prepared(path)
    if where == "top level":
        config["lorasweep_unknown_key"] = 1
    else:
        node_type = next(iter(config["available_node_types"].values()))
        node_type["lorasweep_unknown_key"] = 1
    with pytest.raises(jsonschema.ValidationError, match="lorasweep_unknown_key"):
        validate_config(config)


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=_ids(LAUNCHER_YAMLS))
def test_checkout_is_synced_from_the_launch_directory(path):
    config = _load(path)
    assert config["file_mounts"]["~/lorasweep"] == "."
    # The token the nodes authenticate with travels the same way.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # rsync filters keep a local .venv / results / git history off the nodes.
    assert ".gitignore" in config["rsync_filter"]
    assert ".git" in config["rsync_exclude"]


def _effective_setup_commands(config: dict) -> dict[str, list[str]]:
    """Setup commands each node type runs, after `prepare_config` merged them.

    A node type's own `worker_setup_commands` replaces the cluster-wide list.
    """
    out = {}
    for name, node_type in config["available_node_types"].items():
        if name == config["head_node_type"]:
            out[name] = config["head_setup_commands"]
        else:
            out[name] = node_type.get(
                "worker_setup_commands", config["worker_setup_commands"]
            )
    return out


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=_ids(LAUNCHER_YAMLS))
def test_every_node_installs_lorasweep_after_pinned_ray(path):
    config = _prepared(path)
    for name, commands in _effective_setup_commands(config).items():
        installs = [i for i, c in enumerate(commands) if INSTALL_LORASWEEP.search(c)]
        assert installs, f"{path.name}: node type {name!r} never runs pip install -e ~/lorasweep"
        assert PINNED_RAY in commands, (
            f"{path.name}: node type {name!r} does not pin Ray to the local "
            f"version ({PINNED_RAY})"
        )
        assert commands.index(PINNED_RAY) < installs[0]


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=_ids(LAUNCHER_YAMLS))
def test_token_auth_on_and_dashboard_on_loopback(path):
    config = _prepared(path)
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2
    for command in ray_starts:
        assert "RAY_AUTH_MODE=token ray start" in command
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in " ".join(starts)
    # No extra inbound rules on the cloud firewall.
    assert "security_group" not in config["provider"]


def _gpu_worker_types(config: dict) -> dict[str, dict]:
    return {
        name: node_type
        for name, node_type in config["available_node_types"].items()
        if name != config["head_node_type"]
    }


CLOUD_YAMLS = [
    p for p in LAUNCHER_YAMLS if _load(p)["provider"]["type"] != "local"
]


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=_ids(CLOUD_YAMLS))
def test_worker_types_declare_gpus_and_head_takes_no_trials(path):
    config = _prepared(path)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert head["resources"].get("GPU", 0) == 0
    workers = _gpu_worker_types(config)
    assert workers
    for name, node_type in workers.items():
        assert node_type["resources"].get("GPU", 0) >= 1, f"{name} declares no GPU"
        assert node_type["min_workers"] <= node_type["max_workers"]
        assert node_type["max_workers"] <= config["max_workers"]


def _instance_type(node_config: dict) -> str:
    return node_config.get("InstanceType") or node_config["machineType"]


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=_ids(CLOUD_YAMLS))
def test_declared_resources_match_the_instance_shape(path):
    config = _prepared(path)
    for name, node_type in _gpu_worker_types(config).items():
        node_config = node_type["node_config"]
        instance = _instance_type(node_config)
        assert instance in INSTANCE_SHAPES, f"add the shape of {instance} to the table"
        vcpus, gpus = INSTANCE_SHAPES[instance]
        gpus += sum(a["acceleratorCount"] for a in node_config.get("guestAccelerators", []))
        assert node_type["resources"] == {"CPU": vcpus, "GPU": gpus}, name
        if config["provider"]["type"] == "gcp":
            # GCE refuses to live-migrate a VM with GPUs.
            assert node_config["scheduling"]["onHostMaintenance"] == "TERMINATE", name


def test_local_config_leaves_hardware_detection_to_ray():
    config = _prepared(CLUSTER_DIR / "local.yaml")
    ips = config["provider"]["worker_ips"]
    assert ips and isinstance(config["provider"]["head_ip"], str)
    (node_type,) = config["available_node_types"].values()
    assert node_type["resources"] == {}
    assert node_type["min_workers"] == node_type["max_workers"] == len(ips)
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "--num-gpus" not in starts and "--num-cpus" not in starts


# ---------------------------------------------------------------- KubeRay manifest

RAY_IMAGE = re.compile(
    rf"^rayproject/ray(-ml)?:{re.escape(ray.__version__)}(-py3\d+)?(-cpu|-gpu|-cu\d+)?$"
)


@pytest.fixture(scope="module")
def raycluster() -> dict:
    assert KUBERAY_YAMLS, "no RayCluster manifest in cluster/"
    return _load(KUBERAY_YAMLS[0])


def _pod_groups(rc: dict) -> list[tuple[str, dict]]:
    spec = rc["spec"]
    groups = [("head", spec["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return groups


def test_raycluster_header(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1"
    assert raycluster["kind"] == "RayCluster"
    assert raycluster["metadata"]["name"]
    assert raycluster["spec"]["rayVersion"] == ray.__version__
    assert raycluster["spec"]["authOptions"]["mode"] == "token"


def test_raycluster_head_group(raycluster):
    head = raycluster["spec"]["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["template"]["spec"]["containers"]
    # Only reachable through kubectl port-forward.
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"


def test_raycluster_worker_groups_have_gpus(raycluster):
    groups = raycluster["spec"]["workerGroupSpecs"]
    assert groups
    names = [g["groupName"] for g in groups]
    assert len(set(names)) == len(names)
    for group in groups:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
        (container,) = group["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, group["groupName"]
        assert container["image"].endswith("-gpu") or "-cu" in container["image"]


def test_raycluster_start_params_are_strings(raycluster):
    # The CRD types rayStartParams as map[string]string: a bare 0 is rejected by kubectl.
    for name, group in _pod_groups(raycluster):
        for key, value in group["rayStartParams"].items():
            assert isinstance(value, str), f"{name}: rayStartParams.{key} must be a string"


def test_raycluster_pods_install_lorasweep_before_ray_starts(raycluster):
    assert raycluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    for name, group in _pod_groups(raycluster):
        (container,) = group["template"]["spec"]["containers"]
        assert RAY_IMAGE.match(container["image"]), f"{name}: {container['image']}"
        script = " ".join(container["args"])
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        assert "lorasweep" in env["LORASWEEP_PIP_SPEC"], name
        install = script.find('pip install --no-cache-dir "$LORASWEEP_PIP_SPEC" &&')
        start = script.find("$KUBERAY_GEN_RAY_START_CMD")
        assert 0 <= install < start, f"{name}: install must gate the generated ray start"
