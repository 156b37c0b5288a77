"""``lorasweep doctor``: what a cluster can run, checked before any trial; the same GPU check
runs at the start of ``lorasweep run``.

A spec that asks for GPUs on a cluster that can never have them (no node with that many GPUs,
and no autoscaler node type that provides them) is refused with exit 2 instead of pending
forever. Per GPU node, a one-GPU task reports torch's CUDA build, the driver, native bf16 and
whether DeepSpeed's fused Adam can build there.
"""
from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import UsageError

BOOTSTRAP_CONFIG = Path.home() / "ray_bootstrap_config.yaml"  # written by `ray up` on the head node
HF_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def autoscaler_gpus_per_node() -> list[float]:
    """GPUs of each node type the cluster's autoscaler may start (none outside `ray up`)."""
    if not BOOTSTRAP_CONFIG.is_file():
        return []
    import yaml

    try:
        config = yaml.safe_load(BOOTSTRAP_CONFIG.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    types = config.get("available_node_types") or {}
    return [float((t.get("resources") or {}).get("GPU", 0)) for t in types.values() if isinstance(t, dict)]


def gpu_problems(spec, node_gpus: list[float], autoscaler_gpus: list[float]) -> list[str]:
    """The spec's GPU request against the nodes' GPUs (and the autoscaler's node types)."""
    per_worker = spec.resources.gpus_per_worker
    if per_worker <= 0:
        return []
    if any(g >= per_worker for g in node_gpus + autoscaler_gpus):
        return []
    have = f"its nodes have {', '.join(f'{g:g}' for g in node_gpus) or 'no'} GPUs"
    more = " and its autoscaler can add none" if not autoscaler_gpus else \
        f" and its autoscaler's node types at most {max(autoscaler_gpus):g}"
    return [f"resources.gpus_per_worker: {per_worker:g} GPU per worker, but the cluster has no GPUs that could run "
            f"it: {have}{more}; allowed: 0 on this cluster, or a cluster with GPU nodes (docs/cluster.md)"]


def node_gpus() -> list[float]:
    import ray

    return [float(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n.get("Alive")]


def check_gpus(spec) -> None:
    """Raise UsageError when the connected cluster can never run the spec's GPU request."""
    problems = gpu_problems(spec, node_gpus(), autoscaler_gpus_per_node())
    if problems:
        raise UsageError(problems)


def token_problem(model_names) -> str | None:
    """Hub models may be gated: say so when no token would reach the workers."""
    hub = [n for n in model_names if not n.startswith("zoo/") and not Path(n).expanduser().exists()]
    if hub and not any(os.environ.get(v) for v in HF_TOKEN_VARS):
        return (f"HF_TOKEN is not set: {', '.join(hub)} will load only if public or already cached on every node "
                f"(set HF_TOKEN on the driver; lorasweep passes it to trials)")
    return None


def _probe() -> dict:
    """Runs on a GPU node, holding one GPU."""
    import socket

    import torch

    from trainables.deepspeed_config import fused_adam_buildable
    from trainables.device import driver_version
    from trainables.precision import bf16_native

    available = torch.cuda.is_available()
    return {
        "host": socket.gethostname(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "driver": driver_version(), "cuda_available": available,
        "device": torch.cuda.get_device_name(0) if available else None,
        "bf16_native": bf16_native(), "fused_adam": fused_adam_buildable() if available else None,
    }


def gpu_node_reports() -> list[dict]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_gpus=1)(_probe)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in ray.nodes() if n.get("Alive") and n["Resources"].get("GPU", 0) >= 1]
    return ray.get(refs, timeout=300)


def report_lines(spec=None) -> list[str]:
    """Every check, one line each."""
    import ray

    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    lines = [f"ok    ray: {len(nodes)} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"]
    scale = autoscaler_gpus_per_node()
    lines.append(f"info  autoscaler: node types with {', '.join(f'{g:g}' for g in scale)} GPUs" if scale
                 else "info  autoscaler: none (no ray_bootstrap_config.yaml on this node)")
    reports = gpu_node_reports()
    if not reports:
        lines.append("info  gpu nodes: none; trials run on CPUs (gloo)")
    for r in reports:
        ok = r["cuda_available"] and r["bf16_native"] is not None
        lines.append(
            f"{'ok  ' if ok else 'FAIL'}  gpu node {r['host']}: {r['device'] or 'CUDA unavailable'}; torch {r['torch']} "
            f"(CUDA {r['torch_cuda'] or 'none'}), driver {r['driver'] or 'not found'}; bf16 "
            f"{'native' if r['bf16_native'] else 'not native: fp32 under dtype auto'}; fused Adam "
            f"{'builds' if r['fused_adam'] else 'cannot build: torch AdamW is used'}")
    if spec is not None:
        problems = gpu_problems(spec, node_gpus(), scale)
        lines += [f"FAIL  {p}" for p in problems] or [f"ok    spec {spec.name}: the cluster can run its trials"]
        from orchestrator.spec.preflight import values_of

        token = token_problem(values_of(spec.model.name))
        lines.append(f"warn  {token}" if token else "ok    model access: zoo, local or token set")
    return lines


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check the Ray cluster (GPUs, CUDA, bf16, fused ops) before a sweep")
    p.add_argument("spec", nargs="?", help="also check what this sweep spec asks for")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field (repeatable)")
    p.add_argument("--address", default=None, help="Ray cluster to check: auto or ray://HOST:10001 (default: embedded)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    spec = None
    if args.spec:
        from orchestrator.spec import load_spec

        spec = load_spec(args.spec, args.overrides)
    from orchestrator.connection import connect

    connect(args.address)
    lines = report_lines(spec)
    print("\n".join(lines))
    return 2 if spec is not None and any(line.startswith("FAIL  resources.") for line in lines) else 0

