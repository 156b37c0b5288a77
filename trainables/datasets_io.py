"""Real data as (prompt, answer) examples: Hugging Face datasets by name, and local files.

Task strings:

- ``hf:<name>[:<config>]``: ``datasets.load_dataset(name, config, split=...)``; ``name`` is a
  hub id (served from the local cache when ``HF_HUB_OFFLINE=1``) or a local dataset directory.
- ``file:<path>``: one ``.jsonl``/``.json``, ``.parquet`` or ``.csv`` file, read through
  ``datasets`` (``load_dataset("json"|"parquet"|"csv", data_files=path)``). A file has one
  split, ``train``; ``eval_split``, if set, is the path of a second file in any of these formats.

Each row gives an :class:`Example` from ``prompt_field`` and ``answer_field``, used verbatim
(put any separator such as ``"Answer: "`` in the prompt). With ``text_field`` instead, each
text is cut before its last word: the prompt is everything up to that word, the answer is the
word without trailing punctuation (a LAMBADA-style cloze). This keeps exact-match accuracy
meaningful and CE measured on answer tokens, the same as for every synthetic task.
Rows with an empty prompt or answer (or a text of one word) are skipped.
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from pathlib import Path

from trainables.tasks import Example

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_LAST_WORD = re.compile(r"^(.*\s)(\S+)\s*$", re.S)


@dataclass(frozen=True)
class Fields:
    """Which columns hold the prompt and answer, or the text to cut into a cloze."""

    prompt: str = "prompt"
    answer: str = "answer"
    text: str | None = None

    def needed(self) -> list[str]:
        return [self.text] if self.text else [self.prompt, self.answer]

    def example(self, row: dict) -> Example | None:
        if self.text:
            return _cloze(row[self.text])
        prompt, answer = row[self.prompt], row[self.answer]
        if prompt is None or answer is None or not str(prompt) or not str(answer).strip():
            return None
        return Example(str(prompt), str(answer))


def _cloze(text) -> Example | None:
    match = _LAST_WORD.match(str(text or ""))
    if not match or not match.group(1).strip():
        return None
    answer = match.group(2).rstrip(string.punctuation)
    return Example(match.group(1), answer) if answer else None


def is_dataset_task(task: str) -> bool:
    return task.startswith(("hf:", "file:"))


def dataset_splits(
    task: str, train_size: int, eval_size: int, seed: int, *, fields: Fields, split: str = "train",
    eval_split: str | None = None,
) -> tuple[list[Example], list[Example]]:
    """Seeded, disjoint train/eval examples from a real dataset.

    Rows are visited in a seeded random order. Without ``eval_split`` the first
    ``eval_size`` usable rows are the eval set and train continues from there; with it, eval
    comes from that split. Train never holds a prompt that is in eval.
    """
    train_rows, label = _load(task, split)
    _check_fields(train_rows, fields, label)
    rng = random.Random(f"{task}|{seed}")
    order = list(range(len(train_rows)))
    rng.shuffle(order)
    if eval_split is None:
        eval_examples, used = _take(train_rows, fields, order, eval_size, set(), label, "eval")
        order = order[used:]
    else:
        eval_rows, eval_label = _load(task, eval_split, eval_file=True)
        _check_fields(eval_rows, fields, eval_label)
        eval_order = list(range(len(eval_rows)))
        rng.shuffle(eval_order)
        eval_examples, _ = _take(eval_rows, fields, eval_order, eval_size, set(), eval_label, "eval")
    exclude = {e.prompt for e in eval_examples}
    train_examples, _ = _take(train_rows, fields, order, train_size, exclude, label, "train")
    return train_examples, eval_examples


def _load(task: str, split: str, *, eval_file: bool = False):
    """(rows as a ``datasets.Dataset``, a label naming the source for error messages)."""
    import datasets

    if task.startswith("file:"):
        if eval_file:
            path = Path(split)
        else:
            if split != "train":
                raise ValueError(f"{task}: a file has one split, 'train' (got split {split!r}); "
                                 "set data.eval_split to a second file for a separate eval set")
            path = Path(task.removeprefix("file:"))
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"file {path}: unsupported format {path.suffix!r}; use {', '.join(FILE_FORMATS)}")
        if not path.is_file():
            raise ValueError(f"file {path} not found")
        return datasets.load_dataset(fmt, data_files=str(path), split="train"), f"file {path}"
    name, _, config = task.removeprefix("hf:").partition(":")
    label = f"dataset {name}" + (f" ({config})" if config else "") + f" split {split!r}"
    try:
        return datasets.load_dataset(name, config or None, split=split), label
    except Exception as exc:  # not found, offline without a cached copy, unknown split or config
        raise ValueError(f"{label}: could not be loaded: {exc}") from exc


def _check_fields(rows, fields: Fields, label: str) -> None:
    present = rows.column_names
    missing = [f for f in fields.needed() if f not in present]
    if missing:
        kind = "data.text_field" if fields.text else "data.prompt_field/answer_field"
        raise ValueError(
            f"{label}: field {', '.join(repr(m) for m in missing)} ({kind}) not found; "
            f"fields present: {', '.join(present)}"
        )


def _take(rows, fields: Fields, order: list[int], n: int, exclude: set[str], label: str, which: str,
          chunk: int = 1024) -> tuple[list[Example], int]:
    """Up to ``n`` usable examples with distinct prompts not in ``exclude``, reading rows in
    ``order``; returns them and how many positions of ``order`` were consumed."""
    columns = rows.select_columns(fields.needed())
    out, seen, pos = [], set(exclude), 0
    while len(out) < n and pos < len(order):
        batch = columns[order[pos : pos + chunk]]
        for i in range(len(batch[fields.needed()[0]])):
            pos += 1
            example = fields.example({k: v[i] for k, v in batch.items()})
            if example is not None and example.prompt not in seen:
                seen.add(example.prompt)
                out.append(example)
                if len(out) == n:
                    break
    if len(out) < n:
        raise ValueError(
            f"{label}: only {len(out)} usable examples with distinct prompts for {which} "
            f"({n} requested); lower data.{which}_size"
        )
    return out, pos
