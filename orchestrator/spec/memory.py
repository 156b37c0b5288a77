"""Per-worker memory estimate of a trial, from its config alone (docs/memory.md).

Printed by ``lorasweep run --dry-run``; with ``resources.gpu_memory_gb`` set, a trial whose
estimate exceeds it is a spec problem, reported before Ray starts. The model's shape comes
from the zoo recipe or a local ``config.json`` (a directory, or the Hugging Face cache);
nothing here imports torch or downloads anything.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def params(self) -> int:
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
        return self.layers * per_layer + h + self.vocab * h * (1 if self.tied else 2)

    def target_dims(self, name: str) -> tuple[int, int] | None:
        """(in, out) of a LoRA target by its usual Llama/Phi3/Mistral/Qwen name."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        return {
            "q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h), "qkv_proj": (h, h + 2 * kv),
            "gate_proj": (h, i), "up_proj": (h, i), "gate_up_proj": (h, 2 * i), "down_proj": (i, h),
        }.get(name)


def model_shape(name: str) -> Shape | None:
    """The shape of a zoo model or of a model whose config.json is on this machine, else None."""
    if name.startswith("zoo/"):
        from trainables.models import zoo_recipe
        from trainables.tokenizer import VOCAB_SIZE

        r = zoo_recipe(name)
        return Shape(VOCAB_SIZE, r.hidden, r.layers, r.heads, r.heads, r.intermediate, False)
    config = _local_config(name)
    if config is None:
        return None
    c = config.get("text_config", config)
    heads = c.get("num_attention_heads", 1)
    return Shape(
        c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], heads, c.get("num_key_value_heads") or heads,
        c.get("intermediate_size", 4 * c["hidden_size"]), bool(c.get("tie_word_embeddings", False)),
    )


def _local_config(name: str) -> dict | None:
    path = Path(name) / "config.json"
    if not path.is_file():
        hub = Path(os.environ.get("HF_HUB_CACHE", Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"))
        found = sorted((hub / f"models--{name.replace('/', '--')}" / "snapshots").glob("*/config.json"))
        if not found:
            return None
        path = found[-1]
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def estimate(config: dict, shape: Shape) -> dict[str, float]:
    """Bytes per worker: weights, adapter (+ gradients, optimizer), training activations of
    one micro-batch (with and without checkpointing), the evaluation, and the peak."""
    train, res, zero = config["train"], config["resources"], config["deepspeed"]["zero_stage"]
    workers = res["num_workers"]
    dtype = config["model"]["dtype"]
    half = dtype == "bfloat16" or (dtype == "auto" and res["gpus_per_worker"] > 0)
    w = 2 if half else 4
    h, i, v, length = shape.hidden, shape.intermediate, shape.vocab, train["seq_len"]
    weights = shape.params() * w / (workers if zero == 3 else 1)

    rank = config["lora"]["rank"]
    dims = [shape.target_dims(t) for t in dict.fromkeys(config["lora"]["target_modules"])]
    adapter = shape.layers * sum(rank * (a + b) for a, b in (d for d in dims if d))
    param_b, grad_b, optim_b = (w, w, (12 if half else 8))  # bf16 keeps an fp32 master copy besides Adam's m, v
    adapter_bytes = adapter * (
        param_b / (workers if zero >= 3 else 1) + grad_b / (workers if zero >= 2 else 1) + optim_b / (workers if zero >= 1 else 1)
    )

    micro = train["micro_batch_size"] or train["batch_size"] // workers
    tokens = micro * length
    per_layer = tokens * (w * (8 * h + 4 * i) + 8 * h)  # saved inputs of norms, projections, MLP; fp32 norm copies
    logits = tokens * v * (16 if half else 12)  # logits, float32 log-softmax, its gradient
    stored = shape.layers * per_layer
    checkpointed = shape.layers * tokens * w * h + per_layer  # layer inputs + one layer recomputed
    activations = (checkpointed if train["gradient_checkpointing"] else stored) + logits

    eval_tokens = train["eval_batch_size"] * length
    evaluation = eval_tokens * w * (3 * h + 2 * max(h, i)) + min(train["eval_chunk_tokens"], eval_tokens) * v * (w + 8)
    peak = weights + adapter_bytes + max(activations, evaluation)
    return dict(weights=weights, adapter=adapter_bytes, activations=stored + logits, checkpointed=checkpointed + logits,
                evaluation=evaluation, peak=peak, dtype=("bfloat16" if half else "float32"), micro=micro)


def describe(config: dict) -> str:
    shape = model_shape(config["model"]["name"])
    if shape is None:
        return f"memory: unknown for {config['model']['name']!r} (no config.json on this machine)"
    e = estimate(config, shape)
    t, r = config["train"], config["resources"]
    g = lambda key: f"{e[key] / GIB:.2f} GiB" if e[key] >= GIB else f"{e[key] / 2**20:.1f} MiB"
    ckpt = "on" if t["gradient_checkpointing"] else "off"
    return (
        f"memory per worker (estimate, docs/memory.md): weights {g('weights')} ({e['dtype']}), adapter + "
        f"optimizer {g('adapter')} (ZeRO {config['deepspeed']['zero_stage']}, {r['num_workers']} worker(s)), "
        f"activations {g('activations')} per micro-batch of {e['micro']} x {t['seq_len']} ({g('checkpointed')} "
        f"with checkpointing; {ckpt}), evaluation {g('evaluation')} ({t['eval_batch_size']} x {t['seq_len']}, "
        f"chunk {t['eval_chunk_tokens']}): peak {g('peak')}"
    )


def memory_problems(spec) -> list[str]:
    """A problem line for each grid trial whose estimated peak exceeds resources.gpu_memory_gb."""
    limit = spec.resources.gpu_memory_gb
    if limit is None:
        return []
    from orchestrator.spec.trials import expand_grid

    try:
        configs = expand_grid(spec)
    except ValueError:  # sampled ranges: checked per trial by the trainable's own failure
        return []
    problems = []
    for index, config in enumerate(configs):
        shape = model_shape(config["model"]["name"])
        if shape is None:
            continue
        peak = estimate(config, shape)["peak"] / GIB
        if peak > limit:
            problems.append(
                f"resources.gpu_memory_gb: trial {index} ({config['model']['name']}, rank {config['lora']['rank']}) "
                f"needs an estimated {peak:.3g} GiB per worker, more than {limit:g}; lower train.micro_batch_size "
                "or train.eval_batch_size, set train.gradient_checkpointing: true, or raise deepspeed.zero_stage"
            )
    return problems
