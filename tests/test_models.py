"""Models: zoo sizes against closed-form counts, pretraining that helps, a size axis that
shows after fine-tuning, a cache safe across processes, Phi3 targets, and local HF loading."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers

from orchestrator.cli import main as cli_main
from trainables.models import (
    PRETRAIN_LOG, SIZES, ZOO, build_zoo_model, count_params, ensure_zoo_model, load_model, resolve_target_modules,
    zoo_config, zoo_path, zoo_recipe, zoo_record,
)
from trainables.pretrain import heldout_ce
from trainables.tokenizer import build_char_tokenizer

ROOT = Path(__file__).resolve().parents[1]
LLAMA_TARGETS = ["down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture
def real_recipes(monkeypatch):
    """Full zoo recipes in the shared $LORASWEEP_CACHE (pretrained once across tests and runs)."""
    monkeypatch.delenv("LORASWEEP_PRETRAIN_STEPS", raising=False)


@pytest.fixture
def short_recipes(tmp_path, monkeypatch):
    """A private cache and 20-step pretraining: for tests of the machinery, not of quality."""
    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LORASWEEP_PRETRAIN_STEPS", "20")
    return tmp_path / "cache"


def test_zoo_has_two_architectures_at_sizes_about_4x_apart():
    for arch in ("llama", "phi3"):
        counts = [ZOO[f"zoo/{arch}-{size}"].param_counts()[1] for size in SIZES]
        assert len(counts) >= 4 and 40_000 < counts[0] < 70_000 and 2_500_000 < counts[-1] < 4_000_000
        ratios = [b / a for a, b in zip(counts, counts[1:])]
        assert all(3.6 < r < 4.4 for r in ratios), ratios


@pytest.mark.parametrize("name", list(ZOO))
def test_param_counts_match_closed_form(name):
    recipe = zoo_recipe(name)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(zoo_config(recipe))
    assert type(model).__name__ == {"llama": "LlamaForCausalLM", "phi3": "Phi3ForCausalLM"}[recipe.arch]
    assert count_params(model) == recipe.param_counts()


@pytest.mark.slow
def test_pretrained_xs_beats_its_random_init_twin(real_recipes, one_thread):
    pretrained = load_model("zoo/llama-xs")
    random_init, tokenizer = build_zoo_model("zoo/llama-xs")
    trained_ce = heldout_ce(pretrained.model, pretrained.tokenizer, seed=0)
    untrained_ce = heldout_ce(random_init, tokenizer, seed=0)
    assert untrained_ce > 4.0  # about log(100): uniform over the vocabulary
    assert trained_ce < untrained_ce - 1.5, (trained_ce, untrained_ce)
    assert zoo_record("zoo/llama-xs")["heldout_ce"] == pytest.approx(trained_ce, rel=1e-4)
    files = {p.name for p in zoo_path("zoo/llama-xs").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "lorasweep_recipe.json"} <= files


@pytest.mark.slow
def test_bigger_zoo_model_fine_tunes_to_lower_eval_ce(trial_config, real_recipes, one_thread):
    from trainables.lora import run_trial
    from trainables.session import LocalSession

    eval_ce = {}
    for name in ("zoo/llama-xs", "zoo/llama-s"):  # one size step, 4x; both pretrain in under a minute
        config = json.loads(json.dumps(trial_config))
        config["model"]["name"] = name
        config["data"].update(task="synthetic/markov", complexity=8, train_size=192, eval_size=64)
        # The study's learning rate: at 1e-2 both sizes reach the chain's entropy floor, and
        # a budget that saturates every model cannot show a size axis.
        config["train"].update(steps=150, eval_every=150, seq_len=24, lr=2e-3)
        config["metrics"]["miub"]["enabled"] = False
        session = LocalSession()
        run_trial(config, session)
        eval_ce[name] = session.reports[-1]["eval_ce"]
    assert eval_ce["zoo/llama-s"] < eval_ce["zoo/llama-xs"] - 0.1, eval_ce


CHILD = """
import json, os, sys, time
from pathlib import Path
from trainables.models import ensure_zoo_model
start = Path(sys.argv[1])
(start.parent / f"ready-{sys.argv[2]}").touch()
while not start.exists():
    time.sleep(0.005)
print(json.dumps({"path": str(ensure_zoo_model("zoo/llama-xs")), "pid": os.getpid()}))
"""


@pytest.mark.slow
def test_two_processes_end_with_one_copy_pretrained_once(short_recipes, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = tmp_path / "start"
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(start), str(i)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    deadline = time.monotonic() + 180
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):  # both imported: start together
        assert time.monotonic() < deadline and all(c.poll() is None for c in children), "children did not start"
        time.sleep(0.05)
    start.touch()
    outputs = [c.communicate(timeout=300) for c in children]
    assert [c.returncode for c in children] == [0, 0], [err[-2000:] for _, err in outputs]
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert answers[0]["path"] == answers[1]["path"] == str(zoo_path("zoo/llama-xs"))

    runs = [json.loads(line) for line in (short_recipes / "zoo" / PRETRAIN_LOG).read_text().splitlines()]
    assert len(runs) == 1 and runs[0]["pid"] in {a["pid"] for a in answers}
    assert runs[0]["recipe"]["pretrain_steps"] == 20
    assert [p.name for p in (short_recipes / "zoo").iterdir() if p.name.startswith(".")] == []  # no staging left
    loaded = load_model("zoo/llama-xs")
    assert loaded.params_non_embedding == ZOO["zoo/llama-xs"].param_counts()[1]


def test_steps_override_is_cached_under_its_own_key(monkeypatch):
    monkeypatch.delenv("LORASWEEP_PRETRAIN_STEPS", raising=False)
    real = zoo_path("zoo/llama-xs")
    monkeypatch.setenv("LORASWEEP_PRETRAIN_STEPS", "20")
    assert zoo_path("zoo/llama-xs") != real and zoo_recipe("zoo/llama-xs").pretrain_steps == 20


@pytest.mark.slow
def test_phi3_zoo_model_loads_and_takes_lora_on_fused_qkv(short_recipes):
    import peft

    loaded = load_model("zoo/phi3-xs")
    assert type(loaded.model).__name__ == "Phi3ForCausalLM"
    targets = resolve_target_modules(loaded.model, ["q_proj", "v_proj"])
    assert targets == ["qkv_proj"]
    model = peft.get_peft_model(loaded.model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    adapted = [n for n, _ in model.named_modules() if n.endswith("qkv_proj.lora_A.default")]
    assert len(adapted) == zoo_recipe("zoo/phi3-xs").layers
    ids = loaded.tokenizer(["k:12|k>"], return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], 100)


def test_resolve_target_modules_maps_fused_names_and_reports_misses():
    with torch.device("meta"):
        llama = transformers.AutoModelForCausalLM.from_config(zoo_config(ZOO["zoo/llama-xs"]))
        phi3 = transformers.AutoModelForCausalLM.from_config(zoo_config(ZOO["zoo/phi3-xs"]))
    assert resolve_target_modules(llama, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    assert resolve_target_modules(llama, ["qkv_proj", "gate_up_proj"]) == ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]
    assert resolve_target_modules(phi3, ["q_proj", "k_proj", "v_proj", "o_proj"]) == ["qkv_proj", "o_proj"]
    assert resolve_target_modules(phi3, ["gate_proj", "down_proj", "c_attn"]) == ["gate_up_proj", "down_proj"]
    with pytest.raises(ValueError) as excinfo:
        resolve_target_modules(llama, ["c_attn", "c_proj"])
    message = str(excinfo.value)
    assert "['c_attn', 'c_proj']" in message and ", ".join(LLAMA_TARGETS) in message


def test_load_model_by_local_path(tmp_path):
    tokenizer = build_char_tokenizer()
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "tiny", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "tiny")

    loaded = load_model(str(tmp_path / "tiny"), dtype="float32", local_files_only=True)
    assert loaded.params_total == sum(p.numel() for p in model.parameters())
    assert loaded.params_non_embedding == loaded.params_total - 2 * len(tokenizer) * 32
    ids = loaded.tokenizer(["(3+4)%5>"], return_tensors="pt")["input_ids"]
    assert ids.tolist() == tokenizer(["(3+4)%5>"], return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        assert torch.allclose(loaded.model(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
    with pytest.raises(OSError):
        load_model(str(tmp_path / "missing"), local_files_only=True)


@pytest.mark.slow
def test_cli_lists_the_zoo_and_rejects_unknown_names(short_recipes, capsys):
    assert cli_main(["models", "pretrain", "zoo/llama-xs"]) == 0
    assert "zoo/llama-xs: " in capsys.readouterr().out
    assert cli_main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:] if line.startswith("zoo/")}
    assert set(rows) == set(ZOO)
    total, non_embedding = ZOO["zoo/phi3-l"].param_counts()
    assert rows["zoo/phi3-l"][1:2] == ["phi3"] and str(total) in rows["zoo/phi3-l"] and str(non_embedding) in rows["zoo/phi3-l"]
    assert "yes" in rows["zoo/llama-xs"] and "no" in rows["zoo/llama-s"]

    assert cli_main(["models", "pretrain", "zoo/llama-xxl", "zoo/llama-s"]) == 2
    err = capsys.readouterr().err
    assert "unknown zoo model 'zoo/llama-xxl'" in err and "available: zoo/llama-xs, zoo/llama-s" in err
    assert not zoo_path("zoo/llama-s").exists()  # nothing pretrained when any name is bad
