"""From a validated spec to trial configs: search axes, grid expansion, row columns, hashes.

Pure Python (no Ray, no torch), so ``validate`` and ``--dry-run`` stay fast. A trial config
is the spec's trial sections as a nested dict with every search axis resolved to one value;
the trainable validates it into a :class:`~orchestrator.spec.trial_config.TrialConfig`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any, Iterator

from pydantic import BaseModel

from orchestrator.spec.forms import Choice, Grid, LogUniform, RandInt, Uniform

FORM_TYPES = (Grid, Choice, Uniform, LogUniform, RandInt)

# Spec sections a trial needs; search/scheduler/results stay with the driver.
TRIAL_SECTIONS = ("model", "data", "lora", "train", "metrics", "resources", "deepspeed")


def trial_template(spec) -> dict:
    """The spec sections a trial sees, with value-form objects still in place."""
    return {section: _walk(getattr(spec, section)) for section in TRIAL_SECTIONS}


def _walk(model) -> Any:
    if isinstance(model, FORM_TYPES):
        return model
    if isinstance(model, BaseModel):
        return {name: _walk(getattr(model, name)) for name in type(model).model_fields}
    return model


def axes(template: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every searchable field that is not a plain value: (dotted path, form object)."""
    for key, value in template.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from axes(value, path + ".")
        elif isinstance(value, FORM_TYPES):
            yield path, value


def set_path(config: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        config = config[part]
    config[leaf] = value


def get_path(config: dict, path: str) -> Any:
    for part in path.split("."):
        config = config[part]
    return config


def expand_grid(spec) -> list[dict]:
    """Every trial config of a grid sweep (grid and choice axes both enumerated)."""
    template = trial_template(spec)
    found = list(axes(template))
    ranged = [path for path, form in found if not isinstance(form, (Grid, Choice))]
    if ranged:
        raise ValueError(f"grid search cannot enumerate ranges: {', '.join(ranged)}")
    values = [form.grid if isinstance(form, Grid) else form.choice for _, form in found]
    configs = []
    for combo in itertools.product(*values):
        config = json.loads(json.dumps(template, default=lambda o: None))
        for (path, _), value in zip(found, combo):
            set_path(config, path, value)
        configs.append(config)
    return configs


# Scheduling settings: how many trials run at once and where is not what a trial trains.
SCHEDULING_KEYS = ("max_concurrent_trials", "placement_strategy")


def config_hash(config: dict) -> str:
    """Stable 12-hex-digit hash of a trial config without its seed and scheduling settings:
    the seeds of one configuration share it, at any concurrency. Key order does not matter
    (canonical JSON)."""
    stripped = json.loads(json.dumps(config))
    stripped.get("train", {}).pop("seed", None)
    for key in SCHEDULING_KEYS:
        stripped.get("resources", {}).pop(key, None)
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def scale_factor(alpha: float, rank: int, scaling: str) -> float:
    """LoRA's multiplier on B A x: alpha/r (standard) or alpha/sqrt(r) (rsLoRA)."""
    return alpha / math.sqrt(rank) if scaling == "rslora" else alpha / rank


def config_columns(config: dict) -> dict:
    """Result-row columns that follow from a trial config alone (also for failed trials)."""
    lora, data, train = config["lora"], config["data"], config["train"]
    return {
        "config_hash": config_hash(config),
        "model": config["model"]["name"],
        "task": data["task"],
        "train_size": data["train_size"],
        "eval_size": data["eval_size"],
        "complexity": data["complexity"],
        "rank": lora["rank"],
        "alpha": float(lora["alpha"]),
        "scaling": lora["scaling"],
        "scale_factor": scale_factor(float(lora["alpha"]), int(lora["rank"]), lora["scaling"]),
        "target_modules": ",".join(lora["target_modules"]),
        "lr": float(train["lr"]),
        "seed": train["seed"],
        "batch_size": train["batch_size"],
        "num_workers": config["resources"]["num_workers"],
        "zero_stage": config["deepspeed"]["zero_stage"],
    }

