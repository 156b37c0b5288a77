"""The sweep spec: value forms, section models, loading with overrides, preflight checks.

``SweepSpec``, ``load_spec`` and ``parse_spec`` are the entry points; the value forms and
section models are importable from here too. Nothing here imports Ray or torch.
"""
from orchestrator.spec.forms import Choice, Grid, LogUniform, RandInt, Uniform
from orchestrator.spec.loader import load_spec, parse_spec
from orchestrator.spec.sections import (
    DataSpec,
    DeepSpeedSpec,
    LoraSpec,
    MetricsSpec,
    MiubSpec,
    ModelSpec,
    ResourcesSpec,
    SweepSpec,
    TrainSpec,
)

__all__ = [
    "Choice", "DataSpec", "DeepSpeedSpec", "Grid", "LogUniform", "LoraSpec", "MetricsSpec", "MiubSpec",
    "ModelSpec", "RandInt", "ResourcesSpec", "SweepSpec", "TrainSpec", "Uniform", "load_spec", "parse_spec",
]
