"""Chunked evaluation, micro-batches with gradient accumulation, gradient checkpointing and
dynamic padding: each gives the numbers of the plain computation."""
from __future__ import annotations

import os

import pytest
import torch

from trainables.batching import answer_tokens, global_batch, micro_batches, trim
from trainables.data import IGNORE_INDEX, encode, make_splits
from trainables.evaluation import evaluate
from trainables.lora import enable_gradient_checkpointing, run_trial
from trainables.models import build_zoo_model
from trainables.session import LocalSession


def _peft(name="zoo/llama-xs", seed=0):
    import peft

    from trainables.models import resolve_target_modules

    model, tokenizer = build_zoo_model(name)
    torch.manual_seed(seed)
    targets = resolve_target_modules(model, ["q_proj", "v_proj"])
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM"))
    with torch.no_grad():  # a non-zero B, so the adapter changes the outputs
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return model, tokenizer


def _reference_sums(model, batches):
    """The evaluation as it was: full logits in float32, sliced and reshaped."""
    sums = torch.zeros(4, dtype=torch.float64)
    for b in batches:
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
        pred, target = logits[:, :-1], b["labels"][:, 1:]
        mask = target != IGNORE_INDEX
        ce = torch.nn.functional.cross_entropy(pred.reshape(-1, pred.size(-1)), target.reshape(-1).clamp_min(0), reduction="none").view_as(target)
        exact = ((pred.argmax(-1) == target) | ~mask).all(1) & mask.any(1)
        sums += torch.tensor([(ce * mask).sum().item(), mask.sum().item(), exact.sum().item(), mask.any(1).sum().item()], dtype=torch.float64)
    return sums


@pytest.mark.parametrize("name", ["zoo/llama-xs", "zoo/phi3-xs"])
def test_chunked_evaluation_matches_the_full_logits_one(name):
    model, tokenizer = _peft(name)
    model.eval()
    _, examples = make_splits("synthetic/kv-recall", 8, 40, 4, seed=0)
    data = encode(examples, tokenizer, 64)
    padded = [{k: v[i : i + 16] for k, v in data.items()} for i in range(0, 40, 16)]
    with torch.no_grad():
        s = _reference_sums(model, padded)
    want = {"eval_ce": (s[0] / s[1]).item(), "eval_acc": (s[2] / s[3]).item()}
    for chunk in (1, 7, 1024):
        got = evaluate(model, [trim(b) for b in padded], miub=None, chunk_tokens=chunk)
        assert got["eval_ce"] == pytest.approx(want["eval_ce"], rel=1e-6, abs=1e-6)
        assert got["eval_acc"] == want["eval_acc"]


def test_miub_is_the_same_with_chunked_evaluation():
    from orchestrator.spec.sections import MiubSpec

    model, tokenizer = _peft()
    _, examples = make_splits("synthetic/kv-recall", 8, 32, 4, seed=0)
    batches = [encode(examples, tokenizer, 64)]
    small = evaluate(model, batches, miub=MiubSpec(), chunk_tokens=3)
    large = evaluate(model, batches, miub=MiubSpec(), chunk_tokens=4096)
    assert small["miub"] == pytest.approx(large["miub"], rel=1e-9) and 0 < small["miub"] < 0.7


def test_dynamic_padding_trims_to_the_longest_row_and_is_deterministic():
    _, tokenizer = build_zoo_model("zoo/llama-xs")
    train, _ = make_splits("synthetic/kv-recall", 64, 8, 4, seed=0)
    data = encode(train, tokenizer, 64)
    longest = int(data["attention_mask"].sum(1).max())
    assert data["input_ids"].size(1) == longest < 64  # encoded to the longest example, not seq_len
    batch = global_batch(data, 3, 16, 64, seed=5)
    again = global_batch(data, 3, 16, 64, seed=5)
    parts = micro_batches(batch, 0, 1, 4)
    assert [p["input_ids"].size(1) for p in parts] == [int(p["attention_mask"].sum(1).max()) for p in parts]
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(parts, micro_batches(again, 0, 1, 4)))
    assert sum(answer_tokens(p) for p in parts) == answer_tokens(batch)


def _curve(config, **train):
    config["train"].update(train)
    session = LocalSession()
    run_trial(config, session)
    return [r["train_loss"] for r in session.reports], session.reports[-1]["eval_ce"]


@pytest.mark.slow
def test_micro_batches_with_accumulation_give_the_batch_loss_curve(trial_config, one_thread):
    trial_config["metrics"]["miub"]["enabled"] = False
    trial_config["data"]["eval_size"] = 16
    whole = _curve(trial_config, steps=6, eval_every=1, batch_size=16)
    accumulated = _curve(trial_config, steps=6, eval_every=1, batch_size=16, micro_batch_size=4)
    assert accumulated[0] == pytest.approx(whole[0], rel=1e-5, abs=1e-6)
    assert accumulated[1] == pytest.approx(whole[1], rel=1e-5)
    assert whole[0][-1] < whole[0][0]


def _two_worker_curve(rank: int, port: int, config: dict, out: str) -> None:
    import json

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    session = LocalSession()
    run_trial(config, session)
    if rank == 0:
        with open(out, "w") as f:
            json.dump([r["train_loss"] for r in session.reports], f)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_workers_with_accumulation_give_the_one_worker_loss_curve(trial_config, tmp_path, one_thread):
    import json

    import torch.multiprocessing as mp

    from trainables.distributed import _free_port

    trial_config["metrics"]["miub"]["enabled"] = False
    trial_config["data"]["eval_size"] = 16
    trial_config["train"].update(steps=4, eval_every=1, batch_size=16)
    one_worker, _ = _curve(trial_config)
    trial_config["train"]["micro_batch_size"] = 4  # 4 x accumulation 2 x 2 workers = 16
    trial_config["resources"]["num_workers"] = 2
    out = tmp_path / "losses.json"
    mp.start_processes(_two_worker_curve, args=(_free_port(), trial_config, str(out)), nprocs=2, start_method="spawn")
    assert json.loads(out.read_text()) == pytest.approx(one_worker, rel=1e-5, abs=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    _, tokenizer = build_zoo_model("zoo/llama-xs")
    train, _ = make_splits("synthetic/kv-recall", 16, 8, 4, seed=0)
    batch = trim(encode(train, tokenizer, 64))
    grads = []
    for checkpointing in (False, True):
        model, _ = _peft()
        if checkpointing:
            enable_gradient_checkpointing(model.get_base_model())
        model.train()
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 8
    for name in grads[0]:
        assert grads[1][name].abs().sum() > 0, name
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7)
