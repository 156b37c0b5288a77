"""Base models: the built-in zoo (no download) and any Hugging Face id or local directory.

Zoo models are Llama-architecture causal LMs at sizes spaced ~4x in non-embedding
parameters, so a sweep over ``zoo/llama-*`` is a model-size axis. Each is pretrained once
on first use and cached in Hugging Face format under ``$LORASWEEP_CACHE`` (default
``~/.cache/lorasweep``), keyed by a hash of its recipe; fine-tuning then loads it with
``from_pretrained``, exactly like a hub model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from filelock import FileLock

from trainables.tokenizer import build_char_tokenizer


@dataclass(frozen=True)
class ZooRecipe:
    arch: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int = 256
    pretrain_steps: int = 800
    pretrain_batch: int = 32
    pretrain_seq_len: int = 64
    pretrain_lr: float = 3e-3
    seed: int = 0

    def digest(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True) + transformers.__version__.split(".")[0]
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


ZOO: dict[str, ZooRecipe] = {
    "zoo/llama-xs": ZooRecipe("llama", hidden=48, layers=2, heads=4, intermediate=128),
    "zoo/llama-s": ZooRecipe("llama", hidden=64, layers=4, heads=4, intermediate=192),
    "zoo/llama-m": ZooRecipe("llama", hidden=128, layers=4, heads=4, intermediate=352),
    "zoo/llama-l": ZooRecipe("llama", hidden=192, layers=7, heads=6, intermediate=512),
}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    params_total: int
    params_non_embedding: int


def zoo_config(recipe: ZooRecipe, vocab_size: int) -> transformers.PretrainedConfig:
    return transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden,
        intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=False,
    )


def count_params(model: torch.nn.Module) -> tuple[int, int]:
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
    recipe = _recipe(name)
    return cache_root() / "zoo" / f"{name.removeprefix('zoo/')}-{recipe.digest()}"


def _recipe(name: str) -> ZooRecipe:
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(ZOO)}")
    return ZOO[name]


def build_zoo_model(name: str) -> tuple[torch.nn.Module, object]:
    """The zoo model at random init (seeded by its recipe) with its tokenizer."""
    recipe = _recipe(name)
    tokenizer = build_char_tokenizer()
    torch.manual_seed(recipe.seed)
    model = transformers.AutoModelForCausalLM.from_config(zoo_config(recipe, len(tokenizer)))
    return model, tokenizer


def ensure_zoo_model(name: str) -> Path:
    """Pretrain and cache ``name`` unless a valid copy exists; safe across processes.

    A file lock makes concurrent callers wait for one pretraining; the model is written to
    a temporary directory beside the target and renamed into place, so a reader never sees
    a partial copy.
    """
    from trainables.pretrain import pretrain

    target = zoo_path(name)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        recipe = _recipe(name)
        model, tokenizer = build_zoo_model(name)
        with torch.random.fork_rng():
            losses = pretrain(
                model, tokenizer, steps=recipe.pretrain_steps, batch_size=recipe.pretrain_batch,
                seq_len=recipe.pretrain_seq_len, lr=recipe.pretrain_lr, seed=recipe.seed, label=name,
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            (staging / "lorasweep_recipe.json").write_text(
                json.dumps({"name": name, **dataclasses.asdict(recipe), "final_loss": sum(losses[-20:]) / 20})
            )
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def load_model(name: str, *, dtype: str = "auto", local_files_only: bool = True) -> LoadedModel:
    """Load a zoo model (pretrained on first use) or a Hugging Face model by id or path."""
    source = str(ensure_zoo_model(name)) if name.startswith("zoo/") else name
    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local_files_only)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    total, non_embedding = count_params(model)
    return LoadedModel(model, tokenizer, name, total, non_embedding)
