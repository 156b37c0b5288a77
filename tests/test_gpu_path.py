"""The GPU path's decisions, tested on CPU: device from what Ray assigned, precision, the
user's DeepSpeed config, and one divergence decision for all workers."""
from __future__ import annotations

import json
import os

import pytest
import torch

from orchestrator.errors import UsageError
from orchestrator.spec import parse_spec
from trainables import ds_user_config
from trainables.deepspeed_config import build_config_with_notes, precision_of
from trainables.device import DeviceError, choose_device, trial_device
from trainables.precision import PrecisionError, choose_precision

GPU_SEEN = dict(cuda_available=True, device_count=1, local_rank=0, torch_cuda="12.8", driver="570.86")


def test_device_follows_the_assignment():
    assert choose_device(0, **GPU_SEEN) == torch.device("cpu")  # asked for none: CPU even on a GPU node
    assert choose_device(1, **GPU_SEEN) == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match=r"asked for 1 GPU per worker but CUDA is unavailable here: .*CUDA "
                                          r"none \(a CPU build\), NVIDIA driver not found, 0 visible"):
        choose_device(1, cuda_available=False, device_count=0, local_rank=0, torch_cuda=None, driver=None)
    with pytest.raises(DeviceError, match="local rank 2 has no GPU"):
        choose_device(1, **{**GPU_SEEN, "local_rank": 2})


def test_a_cpu_trial_hides_cuda(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert trial_device(0) == torch.device("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_a_gpu_trial_on_this_cpu_machine_fails_at_once():
    with pytest.raises(DeviceError, match="CUDA is unavailable here"):
        trial_device(1)


@pytest.mark.parametrize("dtype,device,native,expected", [
    ("auto", "cpu", False, "fp32"), ("auto", "cuda", True, "bf16"), ("auto", "cuda", False, "fp32"),
    ("float16", "cuda", True, "fp16"), ("bfloat16", "cuda", True, "bf16"), ("float32", "cuda", True, "fp32"),
    ("bfloat16", "cpu", False, "bf16"),
])
def test_precision_choice(dtype, device, native, expected):
    assert choose_precision(dtype, device, native_bf16=native) == expected


def test_precision_refusals():
    with pytest.raises(PrecisionError, match="float16 needs a GPU"):
        choose_precision("float16", "cpu", native_bf16=False)
    with pytest.raises(PrecisionError, match="only emulated on this GPU"):
        choose_precision("bfloat16", "cuda", native_bf16=False)


def test_fp16_gets_dynamic_loss_scaling_and_the_column_says_so():
    config, _ = build_config_with_notes(micro_batch_size=4, lr=1e-3, zero_stage=2, grad_clip=1.0, precision="fp16")
    assert config["fp16"]["enabled"] is True and config["fp16"]["loss_scale"] == 0  # 0: dynamic
    assert precision_of(config) == "fp16" and "bf16" not in config
    assert precision_of(build_config_with_notes(micro_batch_size=4, lr=1e-3, zero_stage=0, grad_clip=1.0)[0]) == "fp32"


def test_auto_values_are_resolved_and_named(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                                "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": [0.9, 0.95]}},
                                "zero_optimization": {"stage": "auto", "overlap_comm": True},
                                "fp16": {"enabled": True}}))
    config, notes = build_config_with_notes(micro_batch_size=8, lr=3e-4, zero_stage=2, grad_clip=0.5,
                                            config_path=str(path), world_size=2)
    assert config["train_micro_batch_size_per_gpu"] == 8 and config["gradient_accumulation_steps"] == 1
    assert config["train_batch_size"] == 16 and config["optimizer"]["params"] == {"lr": 3e-4, "betas": [0.9, 0.95]}
    assert config["zero_optimization"] == {"stage": 2, "overlap_comm": True}
    assert precision_of(config) == "fp16"  # the user's precision is what runs, and what is recorded
    assert sorted(n.split(": ")[1].split(" ")[0] for n in notes) == [
        "gradient_accumulation_steps", "optimizer.params.lr", "train_micro_batch_size_per_gpu", "zero_optimization.stage"]


def test_a_field_lorasweep_decides_is_never_silently_overridden(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"gradient_accumulation_steps": 4, "gradient_clipping": 2.0, "scheduler": {"x": "auto"}}))
    spec = {"name": "d", "deepspeed": {"config": str(path)}, "train": {"lr": {"choice": [1e-3, 1e-4]}},
            "search": {"algorithm": "random"}}
    with pytest.raises(UsageError) as caught:
        parse_spec(spec)
    lines = caught.value.problems
    assert any("gradient_accumulation_steps is 4 but" in line and "allowed: \"auto\"" in line for line in lines)
    assert any("gradient_clipping is 2.0 but train.grad_clip gives 1.0" in line for line in lines)
    assert any("scheduler.x is \"auto\", which lorasweep cannot resolve" in line for line in lines)
    path.write_text(json.dumps({"optimizer": {"params": {"lr": 1e-3}}}))
    with pytest.raises(UsageError, match="optimizer.params.lr is 0.001 but train.lr gives a value per trial"):
        parse_spec(spec)


def _agree_worker(rank: int, port: int, out):
    import torch.distributed as dist

    from trainables import divergence

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    loss = float("nan") if rank == 1 else 2.0  # only the second worker's loss goes non-finite
    out.put((rank, divergence.agree(divergence.loss_problem(loss))))
    dist.destroy_process_group()


def test_divergence_on_one_worker_ends_both_at_the_same_step():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_agree_worker, args=(rank, port, out)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[1] == "non-finite train loss (nan)"
    assert results[0] == "diverged on another worker"  # no hang: both leave the loop together


def test_gpu_request_against_nodes_and_autoscaler():
    from orchestrator.doctor import gpu_problems

    spec = parse_spec({"name": "g", "resources": {"gpus_per_worker": 1}})
    assert gpu_problems(spec, [0.0, 0.0], []) == [
        "resources.gpus_per_worker: 1 GPU per worker, but the cluster has no GPUs that could run it: its nodes have "
        "0, 0 GPUs and its autoscaler can add none; allowed: 0 on this cluster, or a cluster with GPU nodes "
        "(docs/cluster.md)"]
    assert gpu_problems(spec, [0.0], [8.0]) == []  # the autoscaler can add a GPU node
    assert gpu_problems(spec, [1.0], []) == []
    assert gpu_problems(parse_spec({"name": "c"}), [0.0], []) == []


@pytest.mark.slow
def test_a_gpu_spec_on_this_cpu_cluster_exits_2_naming_it(tmp_path, ray_shutdown, capsys):
    from orchestrator.cli import main

    code = main(["run", "search_spaces/quickstart.yaml", "--set", "resources.gpus_per_worker=1", "--num-cpus", "2",
                 "--set", f"results.path={tmp_path / 'r'}"])
    err = capsys.readouterr().err
    assert code == 2 and "the cluster has no GPUs that could run it" in err
    assert len([line for line in err.splitlines() if line.startswith("lorasweep: error:")]) == 1


@pytest.mark.slow
def test_doctor_prints_its_checks_and_exits_0(ray_shutdown, capsys, monkeypatch):
    from orchestrator.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["doctor", "search_spaces/quickstart.yaml", "--set", "model.name=meta-llama/Llama-3.1-8B"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok    ray: 1 node(s)")
    assert "info  gpu nodes: none; trials run on CPUs (gloo)" in out
    assert "warn  HF_TOKEN is not set: meta-llama/Llama-3.1-8B" in out
