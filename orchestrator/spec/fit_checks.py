"""Preflight checks that look at the world, not the spec's types: model directories, the
results path, and whether the task's examples fit ``train.seq_len``.

Each returns problem lines (field, value, what is allowed). They run before Ray starts, so a
sweep that would fail in every trial fails once, in seconds, with the other spec problems.
"""
from __future__ import annotations

import os
from pathlib import Path

SAMPLE = 200  # examples tokenised per (task, complexity) to find the longest


def looks_like_path(name: str) -> bool:
    """A model name meant as a directory: absolute, explicitly relative, home, or existing."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).exists()


def model_directory_problems(names) -> list[str]:
    problems = []
    for name in names:
        if name.startswith("zoo/") or not looks_like_path(name):
            continue
        path = Path(name).expanduser()
        if not path.is_dir():
            problems.append(f"model.name: {name!r}: no such directory; allowed: zoo/<arch>-<size>, a Hugging Face id, "
                            f"or a directory holding config.json and a tokenizer")
            continue
        missing = []
        if not (path / "config.json").is_file():
            missing.append("config.json")
        if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")):
            missing.append("a tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
        if missing:
            problems.append(f"model.name: {name!r} has no {' and no '.join(missing)}; a model directory is what "
                            f"save_pretrained writes for the model and its tokenizer")
    return problems


def results_path_problems(path: str) -> list[str]:
    """A local results path must be a directory, or creatable, and writable (nothing is created here)."""
    if "://" in path:
        return []
    target = Path(path).expanduser()
    if target.exists():
        if not target.is_dir():
            return [f"results.path: {path!r} is a file; allowed: a directory (it is created if missing)"]
        return [] if os.access(target, os.W_OK | os.X_OK) else [f"results.path: {path!r} is not writable"]
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return [f"results.path: {path!r} cannot be created: {str(parent)!r} is a file"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"results.path: {path!r} cannot be created: {str(parent)!r} is not writable"]
    return []


def batch_problems(batch_size: int, train_sizes) -> list[str]:
    return [
        f"train.batch_size: {batch_size} is more than data.train_size ({size}), so every batch would repeat examples; "
        f"allowed: batch_size <= train_size"
        for size in sorted(set(train_sizes)) if batch_size > size
    ]


def seq_len_problems(spec, models, tasks, complexities) -> list[str]:
    """Tokenise a sample of each synthetic task's examples with each zoo or local model's
    tokenizer; name the longest that does not fit ``train.seq_len``."""
    from trainables.data import make_splits

    problems = []
    for model in models:
        tokenizer = _tokenizer(model, spec.model.local_files_only)
        if tokenizer is None:
            continue
        for task in tasks:
            if not task.startswith("synthetic/"):
                continue  # real data is read inside the trial; its fields decide what it holds
            for complexity in complexities:
                try:
                    train, evaluation = make_splits(task, min(SAMPLE, spec.data.eval_size), min(SAMPLE, spec.data.eval_size),
                                                    complexity, spec.data.seed)
                except ValueError:
                    continue  # reported by the task checks
                longest, example = _longest(tokenizer, train + evaluation)
                if longest > spec.train.seq_len:
                    problems.append(
                        f"train.seq_len: {spec.train.seq_len} is too short for {task} at complexity {complexity} "
                        f"with {model}: examples need up to {longest} tokens (e.g. prompt {example.prompt!r}); "
                        f"allowed: >= {longest}")
    return problems


def _tokenizer(model: str, local_files_only: bool):
    if model.startswith("zoo/"):
        from trainables.tokenizer import build_char_tokenizer

        return build_char_tokenizer()
    if looks_like_path(model) and Path(model).expanduser().is_dir():
        import transformers

        return transformers.AutoTokenizer.from_pretrained(str(Path(model).expanduser()), local_files_only=True)
    return None  # a hub id: its tokenizer may only be in a cache on the cluster


def _longest(tokenizer, examples):
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=True)["input_ids"]
    answers = tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"]
    lengths = [len(p) + len(a) for p, a in zip(prompts, answers)]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    return lengths[i], examples[i]
