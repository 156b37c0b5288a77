"""The typed trial config a trainable validates at its entry, and the runtime settings
that travel beside it.

A trial config is built from the spec (:func:`orchestrator.spec.trials.expand_grid`, or Tune's
sampling of the same template); validating it here means every default the trial reads
comes from the spec's section models. Where the trial runs (experiment, storage, retries) is
:class:`RuntimeSettings`, never part of the config or its hash.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from orchestrator.spec.forms import _Strict
from orchestrator.spec.sections import (
    DataSpec,
    DeepSpeedSpec,
    LoraSpec,
    MetricsSpec,
    ModelSpec,
    ResourcesSpec,
    TrainSpec,
)
from orchestrator.spec.trials import TRIAL_SECTIONS, _walk, axes


class TrialConfig(_Strict):
    """One trial's resolved configuration: the spec's trial sections with one value per axis.

    Validated at the trainable's entry; a field left out takes the section model's default.
    """

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec()
    metrics: MetricsSpec = MetricsSpec()
    resources: ResourcesSpec = ResourcesSpec()
    deepspeed: DeepSpeedSpec = DeepSpeedSpec()

    @model_validator(mode="after")
    def _resolved(self):
        left = [path for path, _ in axes(_walk_sections(self))]
        if left:
            raise ValueError(f"a trial config holds one value per field; still a search form: {', '.join(left)}")
        return self


def _walk_sections(config: TrialConfig) -> dict:
    return {section: _walk(getattr(config, section)) for section in TRIAL_SECTIONS}


class RuntimeSettings(BaseModel):
    """Where a trial runs and how often it may be retried: the same for every trial of a
    sweep, and no part of what it trains (so never in the config or its hash)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str
    storage_path: str
    max_failures: int

