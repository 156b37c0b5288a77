"""Scaling-law fits and checks over the Parquet result store.

``analyze`` reduces result rows to one point per trial, fits each requested law form per
(metric, x axis, group) with robust least squares and bootstrap intervals over seeds,
checks the trend, and returns the ``fits.json`` records; with ``report_dir`` it also writes
report.md, fits.json, rslora.json and one PNG per (metric, x). ``rslora_check`` compares
how final CE moves with rank under standard LoRA and rsLoRA. See docs/analysis.md.

Importing the package is cheap (the CLI imports it to build ``--help``); numpy, scipy and
matplotlib load on first use.
"""
from __future__ import annotations

from importlib import import_module

from .names import AXES, DEFAULT_FORMS, JOINT_FORMS, METRICS, STEPS

_LAZY = {"run": "pipeline", "Analysis": "pipeline", "RECORD_KEYS": "pipeline",
         "rslora_check": "rslora", "LAWS": "laws", "Law": "laws", "register_law": "laws"}

__all__ = ["analyze", "rslora_check", "run", "Analysis", "RECORD_KEYS", "LAWS", "Law",
           "register_law", "AXES", "METRICS", "STEPS", "DEFAULT_FORMS", "JOINT_FORMS"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def analyze(data, x="rank", y=METRICS, by=(), step="final", experiment=None,
            report_dir=None, n_boot=1000, seed=0, forms=DEFAULT_FORMS,
            expect=None, joint=None, joint_forms=JOINT_FORMS,
            include_stopped=False) -> list[dict]:
    """Fit and check scaling laws; returns the fits.json records (one per x, group, metric, form).

    data: a ``pyarrow.Table`` or ``pyarrow.dataset.Dataset`` of result rows.
    x, y, by: column names (a name, a comma-separated string or a sequence).
    step: ``final`` (each trial's last step) or ``best`` (its lowest-eval_ce step).
    experiment: keep only this experiment. forms: law forms from the registry.
    expect: {metric: "falls" | "rises"} overriding the expected trend of a metric.
    n_boot, seed: bootstrap resamples and the generator seed.
    joint: axes of the joint fits (2 or 3); by default ``x`` itself when it names 2 or 3
    axes. joint_forms: ``additive`` and/or ``multiplicative`` (``("none",)`` skips them).
    include_stopped: keep early-stopped trials in ``final`` fits (left out by default).
    Unknown columns raise ``orchestrator.errors.UsageError`` naming them; data too thin for
    a law gives records with verdict ``insufficient`` and a message saying why.
    """
    from .pipeline import run

    analysis = run(data, x=x, y=y, by=by, step=step, experiment=experiment, forms=forms,
                   n_boot=n_boot, seed=seed, expect=expect, joint=joint,
                   joint_forms=joint_forms, include_stopped=include_stopped)
    if report_dir is not None:
        from .report import write

        write(analysis, report_dir)
    return analysis.records
