"""Provenance stored with every row: package versions and the git commit of the checkout."""
from __future__ import annotations

import json
import os
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


GIT_COMMIT_ENV = "LORASWEEP_GIT_COMMIT"


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the lorasweep checkout, if it is one (None for a wheel install).

    ``LORASWEEP_GIT_COMMIT`` wins when set: ``ray job submit --working-dir`` uploads the
    checkout without ``.git``, so a cluster run passes the commit through the job's
    environment (``--runtime-env-json '{"env_vars": {"LORASWEEP_GIT_COMMIT": "..."}}'``).
    """
    given = os.environ.get(GIT_COMMIT_ENV, "").strip()
    if given:
        return given
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
