"""Provenance stored with every row: package versions and the git commit of the checkout."""
from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("lorasweep", "torch", "ray", "deepspeed", "transformers", "peft", "datasets", "optuna", "pyarrow")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the lorasweep checkout, if it is one (None for a wheel install)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_columns() -> dict:
    return {"package_versions": json.dumps(package_versions(), sort_keys=True), "git_commit": git_commit()}
