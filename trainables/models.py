"""Base models: the built-in zoo (no download) and any Hugging Face id or local directory.

Zoo models (``zoo/llama-<size>``, ``zoo/phi3-<size>``) are causal LMs built from transformers
configs at sizes spaced ~4x in non-embedding parameters, so a sweep over them is a model-size
axis. Each is pretrained once on first use (``trainables.pretrain``) and cached in Hugging Face
format, with its tokenizer, under ``$LORASWEEP_CACHE/zoo`` (default ``~/.cache/lorasweep``),
keyed by a hash of its recipe; fine-tuning then loads it with ``from_pretrained``, exactly
like a hub model.

Environment:

- ``LORASWEEP_CACHE``: cache root.
- ``LORASWEEP_PRETRAIN_STEPS``: override every zoo recipe's pretraining steps (for tests and
  quick looks). The override is part of the recipe hash, so a shortened model is cached
  under its own name and never stands in for the real one.
- ``LORASWEEP_PRETRAIN_THREADS``: torch threads while pretraining (default 1). The zoo's
  matrices are too small to split well, and on a shared 2-core machine 2 threads ran 1.3-9x
  slower than 1 (spinning worker threads fight other processes for the cores).

torch and transformers are imported inside functions, so listing the zoo stays instant.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from trainables.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, build_char_tokenizer

ARCHS = ("llama", "phi3")
PRETRAIN_LOG = "pretrain-log.jsonl"  # one line per pretraining run, beside the cached models


@dataclass(frozen=True)
class ZooRecipe:
    """Shape and pretraining of one zoo model; every field goes into the cache key."""

    arch: str  # "llama" (separate q/k/v, gate/up projections) or "phi3" (fused qkv_proj, gate_up_proj)
    hidden: int
    layers: int
    heads: int
    intermediate: int
    pretrain_steps: int
    pretrain_lr: float
    pretrain_batch: int = 16  # rows per step
    pretrain_seq_len: int = 128  # tokens per row
    max_positions: int = 256
    seed: int = 0
    corpus: int = 5  # version of trainables.pretrain's corpus: bump when what it generates changes

    def digest(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True) + version("transformers").split(".")[0]
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def param_counts(self, vocab_size: int = VOCAB_SIZE) -> tuple[int, int]:
        """(total, non-embedding) in closed form.

        Per layer: attention q, k, v, o = 4 h^2 (as many KV heads as heads; Phi3 fuses q, k, v
        into one 3h x h matrix, the same weights), gated MLP gate, up, down = 3 h i, and two
        RMSNorm weights 2 h. Plus the final norm h. Embedding part: input embeddings and
        the untied LM head, 2 V h.
        """
        h, i = self.hidden, self.intermediate
        non_embedding = self.layers * (4 * h * h + 3 * h * i + 2 * h) + h
        return non_embedding + 2 * vocab_size * h, non_embedding

    def tokens(self) -> int:
        """Pretraining tokens: steps x rows x row length."""
        return self.pretrain_steps * self.pretrain_batch * self.pretrain_seq_len


# Sizes ~4x apart in non-embedding parameters (55k, 214k, 853k, 3.36M). Bigger models get
# more steps and a lower peak learning rate, so each size ends at a lower held-out loss than
# the last (2.106, 2.008, 1.903, 1.897 nats; s at lr 7e-3 had ended at 2.248, above xs).
SIZES: dict[str, dict] = {
    "xs": dict(hidden=48, layers=2, heads=4, intermediate=128, pretrain_steps=600, pretrain_lr=8e-3),
    "s": dict(hidden=64, layers=4, heads=4, intermediate=192, pretrain_steps=650, pretrain_lr=5e-3),
    "m": dict(hidden=128, layers=4, heads=4, intermediate=384, pretrain_steps=800, pretrain_lr=3e-3),
    "l": dict(hidden=192, layers=7, heads=6, intermediate=576, pretrain_steps=1000, pretrain_lr=2e-3),
}

ZOO: dict[str, ZooRecipe] = {
    f"zoo/{arch}-{size}": ZooRecipe(arch, **shape) for arch in ARCHS for size, shape in SIZES.items()
}


@dataclass
class LoadedModel:
    model: object  # a transformers PreTrainedModel
    tokenizer: object
    name: str
    params_total: int
    params_non_embedding: int


def zoo_recipe(name: str) -> ZooRecipe:
    """The recipe ``name`` is built from, with ``LORASWEEP_PRETRAIN_STEPS`` applied."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(ZOO)}")
    steps = os.environ.get("LORASWEEP_PRETRAIN_STEPS")
    return dataclasses.replace(ZOO[name], pretrain_steps=int(steps)) if steps else ZOO[name]


def zoo_config(recipe: ZooRecipe, vocab_size: int = VOCAB_SIZE):
    """The transformers config of a recipe (special token ids follow the char tokenizer)."""
    import transformers

    common = dict(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden,
        intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    if recipe.arch == "llama":
        return transformers.LlamaConfig(**common)
    if recipe.arch == "phi3":
        return transformers.Phi3Config(original_max_position_embeddings=recipe.max_positions, **common)
    raise ValueError(f"unknown zoo architecture {recipe.arch!r}; known: {', '.join(ARCHS)}")


def count_params(model) -> tuple[int, int]:
    """(total, non-embedding): input embeddings and the LM head are the embedding part."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    if head is not None and head.weight is not model.get_input_embeddings().weight:
        embedding += head.weight.numel()
    return total, total - embedding


def cache_root() -> Path:
    return Path(os.environ.get("LORASWEEP_CACHE", Path.home() / ".cache" / "lorasweep"))


def zoo_path(name: str) -> Path:
    return cache_root() / "zoo" / f"{name.removeprefix('zoo/')}-{zoo_recipe(name).digest()}"


def zoo_record(name: str) -> dict | None:
    """What the pretraining of a cached zoo model recorded (loss, time), or None if uncached."""
    path = zoo_path(name) / "lorasweep_recipe.json"
    return json.loads(path.read_text()) if path.exists() else None


def build_zoo_model(name: str):
    """``(model, tokenizer)``: the zoo model at random init, seeded by its recipe."""
    import torch
    import transformers

    recipe = zoo_recipe(name)
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        model = transformers.AutoModelForCausalLM.from_config(zoo_config(recipe))
    return model, build_char_tokenizer()


def ensure_zoo_model(name: str) -> Path:
    """Pretrain and cache ``name`` unless a valid copy exists; safe across processes.

    A file lock makes concurrent callers wait for one pretraining; the model is written to
    a temporary directory beside the target and renamed into place, so a reader never sees
    a partial copy. Staging directories left by a killed process are removed under the lock.
    """
    from filelock import FileLock

    target = zoo_path(name)
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _complete(target):
            return target
        for stale in target.parent.glob(f".{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            record = _pretrain_into(name, staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        with open(target.parent / PRETRAIN_LOG, "a") as log:
            log.write(json.dumps(record) + "\n")
    return target


def _complete(path: Path) -> bool:
    return (path / "config.json").exists() and (path / "lorasweep_recipe.json").exists()


def _pretrain_into(name: str, directory: Path) -> dict:
    """Pretrain ``name`` from its seed and save model, tokenizer and a record to ``directory``."""
    import torch

    from trainables.pretrain import heldout_ce, pretrain

    recipe = zoo_recipe(name)
    model, tokenizer = build_zoo_model(name)
    threads = int(os.environ.get("LORASWEEP_PRETRAIN_THREADS", 1))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        with torch.random.fork_rng():
            losses = pretrain(
                model, tokenizer, steps=recipe.pretrain_steps, batch_size=recipe.pretrain_batch,
                seq_len=recipe.pretrain_seq_len, lr=recipe.pretrain_lr, seed=recipe.seed, label=name,
            )
        seconds = time.perf_counter() - started
        heldout = heldout_ce(model, tokenizer, seed=recipe.seed, seq_len=recipe.pretrain_seq_len)
    finally:
        torch.set_num_threads(previous)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    tail = losses[-max(len(losses) // 20, 1):]
    total, non_embedding = count_params(model)
    record = {
        "name": name, "digest": recipe.digest(), "recipe": dataclasses.asdict(recipe),
        "params_total": total, "params_non_embedding": non_embedding,
        "final_loss": sum(tail) / len(tail), "heldout_ce": heldout,
        "seconds": seconds, "tokens": recipe.tokens(), "tokens_per_s": recipe.tokens() / seconds,
        "threads": threads, "pid": os.getpid(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (directory / "lorasweep_recipe.json").write_text(json.dumps(record, indent=1))
    return record


def load_model(name: str, *, dtype: str = "auto", local_files_only: bool = True) -> LoadedModel:
    """Load a zoo model (pretrained on first use) or a Hugging Face model by id or path."""
    import torch
    import transformers

    source = str(ensure_zoo_model(name)) if name.startswith("zoo/") else name
    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local_files_only)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    total, non_embedding = count_params(model)
    return LoadedModel(model, tokenizer, name, total, non_embedding)


# LoRA targets of a fused projection, by the names of the projections it fuses.
FUSED_PROJECTIONS = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def linear_module_names(model) -> list[str]:
    """Sorted leaf names of the model's linear layers: what LoRA ``target_modules`` can name."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))})


def resolve_target_modules(model, requested: list[str]) -> list[str]:
    """Map the spec's ``target_modules`` onto the module names this model has.

    A name the model has is kept. ``q_proj``/``k_proj``/``v_proj`` become ``qkv_proj`` and
    ``gate_proj``/``up_proj`` become ``gate_up_proj`` on models that fuse them (Phi3), so one
    spec adapts Llama and Phi3 alike (on Phi3, ``[q_proj, v_proj]`` adapts the fused matrix,
    k included). The reverse holds too: ``qkv_proj`` on Llama becomes q, k and v. A name that
    matches nothing is dropped, so a list can cover several architectures; if nothing at all
    matches, ValueError names the requested modules and the model's linear modules.
    """
    available = set(linear_module_names(model))
    resolved: list[str] = []
    for name in requested:
        if name in available:
            resolved.append(name)
            continue
        resolved += [fused for fused, parts in FUSED_PROJECTIONS.items() if name in parts and fused in available]
        resolved += [part for part in FUSED_PROJECTIONS.get(name, ()) if part in available]
    if not resolved:
        raise ValueError(
            f"lora.target_modules {list(requested)} match no linear module of this model; "
            f"its linear modules are: {', '.join(sorted(available))}"
        )
    return list(dict.fromkeys(resolved))
