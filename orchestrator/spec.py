"""The sweep spec: pydantic models of one YAML file, validated before Ray starts.

A searchable field holds a scalar or exactly one of the value forms
``{grid: [...]}``, ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}`` (inclusive). Every problem in a file is collected into one
:class:`~orchestrator.errors.UsageError`, one line per problem, naming the field path, the
bad value and what is allowed. This module never imports Ray or torch.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from orchestrator.errors import UsageError
from orchestrator.overrides import apply_overrides

T = TypeVar("T")

FORMS = ("grid", "choice", "uniform", "loguniform", "randint")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Grid(_Strict, Generic[T]):
    """Every value is run (a Cartesian product with the other grid axes)."""

    grid: Annotated[list[T], Field(min_length=1)]


class Choice(_Strict, Generic[T]):
    """One value per trial, picked by the search algorithm."""

    choice: Annotated[list[T], Field(min_length=1)]


class _Range(_Strict):
    @model_validator(mode="after")
    def _ordered(self):
        lo, hi = getattr(self, self._form)
        if not lo < hi:
            raise ValueError(f"{self._form} needs [lo, hi] with lo < hi, got [{lo}, {hi}]")
        return self


class Uniform(_Range):
    _form = "uniform"
    uniform: tuple[float, float]


class LogUniform(_Range):
    _form = "loguniform"
    loguniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]


class RandInt(_Range):
    _form = "randint"
    randint: tuple[int, int]


def _form_of(value: Any) -> str:
    if isinstance(value, dict):
        keys = list(value)
        return keys[0] if len(keys) == 1 and keys[0] in FORMS else "unknown-form"
    if isinstance(value, (Grid, Choice, Uniform, LogUniform, RandInt)):
        return next(f for f in FORMS if f in type(value).model_fields)
    return "value"


def Searchable(scalar: Any, *, numeric: bool = False) -> Any:
    """A field type: ``scalar`` or one of the value forms over ``scalar``.

    Range forms (uniform, loguniform, randint) are offered only for ``numeric`` fields.
    """
    options = [
        Annotated[scalar, Tag("value")],
        Annotated[Grid[scalar], Tag("grid")],
        Annotated[Choice[scalar], Tag("choice")],
    ]
    if numeric:
        options += [
            Annotated[Uniform, Tag("uniform")],
            Annotated[LogUniform, Tag("loguniform")],
            Annotated[RandInt, Tag("randint")],
        ]
    return Annotated[Union[tuple(options)], Discriminator(_form_of)]


PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Scaling = Literal["standard", "rslora"]


class ModelSpec(_Strict):
    """Which base model: ``zoo/<arch>-<size>``, a Hugging Face id, or a local directory."""

    name: Searchable(str) = "zoo/llama-xs"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    local_files_only: bool = True


class DataSpec(_Strict):
    """Which task, how much of it and how hard."""

    task: Searchable(str) = "synthetic/kv-recall"
    train_size: Searchable(PosInt, numeric=True) = 2000
    eval_size: PosInt = 256
    complexity: Searchable(PosInt, numeric=True) = 4
    seed: NonNegInt = 0
    prompt_field: str = "prompt"
    answer_field: str = "answer"
    text_field: str | None = None
    split: str = "train"
    eval_split: str | None = None


class LoraSpec(_Strict):
    """The PEFT LoRA adapter: rank, alpha, scaling rule and targets."""

    rank: Searchable(PosInt, numeric=True) = 8
    alpha: Searchable(PosFloat, numeric=True) = 16.0
    scaling: Searchable(Scaling) = "standard"
    target_modules: Annotated[list[str], Field(min_length=1)] = ["q_proj", "v_proj"]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class TrainSpec(_Strict):
    """The fine-tuning loop; ``eval_every`` is in optimizer steps."""

    steps: PosInt = 300
    lr: Searchable(PosFloat, numeric=True) = 1e-3
    batch_size: PosInt = 16
    seq_len: PosInt = 64
    eval_every: PosInt = 50
    seed: Searchable(NonNegInt, numeric=True) = 0
    warmup_steps: NonNegInt = 0
    grad_clip: Annotated[float, Field(ge=0)] = 1.0


class MiubSpec(_Strict):
    """The MIUB metric (see docs/miub.md)."""

    enabled: bool = True
    estimator: str = "jsd_topk"
    top_k: PosInt = 32
    temperature: PosFloat = 1.0


class MetricsSpec(_Strict):
    miub: MiubSpec = MiubSpec()


class SearchSpec(_Strict):
    """How configurations are chosen: every grid point, random draws, or Optuna."""

    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: PosInt = 1
    sampler: Literal["tpe", "cmaes", "nsga2"] = "tpe"
    metric: str | list[str] = "eval_ce"
    mode: Literal["min", "max"] | list[Literal["min", "max"]] = "min"
    study_name: Annotated[str, Field(min_length=1)] | None = None  # Optuna study; default: the sweep name


class SchedulerSpec(_Strict):
    """Early stopping: ``fifo`` runs every trial to the end, ``asha`` stops weak ones."""

    type: Literal["fifo", "asha"] = "fifo"
    grace_period: PosInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 2.0
    metric: str = "eval_ce"
    mode: Literal["min", "max"] = "min"


class ResourcesSpec(_Strict):
    """What one trial reserves; a trial needs num_workers x gpus_per_worker GPUs."""

    num_workers: PosInt = 1
    cpus_per_worker: PosFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_concurrent_trials: PosInt = 2


class DeepSpeedSpec(_Strict):
    """ZeRO stage, or a full DeepSpeed JSON config that lorasweep fills in."""

    zero_stage: Literal[0, 1, 2, 3] = 0
    config: str | None = None


class FailuresSpec(_Strict):
    max_failures: NonNegInt = 1


class ResultsSpec(_Strict):
    """Where the Parquet store and Ray's experiment directory live."""

    path: str = "results"
    storage_path: str | None = None
    flush_rows: PosInt = 256
    flush_seconds: PosFloat = 10.0


class SweepSpec(_Strict):
    """One sweep: everything a run needs, validated up front."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec()
    metrics: MetricsSpec = MetricsSpec()
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    deepspeed: DeepSpeedSpec = DeepSpeedSpec()
    failures: FailuresSpec = FailuresSpec()
    results: ResultsSpec = ResultsSpec()

    @model_validator(mode="after")
    def _cross_field(self):
        problems = []
        if self.train.eval_every > self.train.steps:
            problems.append(
                f"train.eval_every: {self.train.eval_every} is more than train.steps "
                f"({self.train.steps}); allowed: 1..train.steps"
            )
        if self.train.batch_size % self.resources.num_workers:
            problems.append(
                f"train.batch_size: {self.train.batch_size} is not divisible by "
                f"resources.num_workers ({self.resources.num_workers}); the global batch is split evenly"
            )
        from orchestrator.search_rules import search_problems  # it imports this module

        problems += search_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _describe(err: dict) -> str:
    """One line per pydantic error: field path, bad value, what is allowed."""
    loc = []
    for part in map(str, err["loc"]):
        if part != "value" and not (loc and loc[-1] == part):  # tag and field share a name
            loc.append(part)
    path = ".".join(loc) or "<spec>"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{path}: unknown key (not a field of this section)"
    if err["type"] == "union_tag_invalid":
        return f"{path}: {err['input']!r} is not a plain value or one of the forms {', '.join(FORMS)}"
    if not loc:  # cross-field problems already name their fields
        return msg
    return f"{path}: {err['input']!r} is not allowed ({_allowed(msg)})"


_PHRASES = [
    (r"^Input should be greater than or equal to (.+)$", r"must be >= \1"),
    (r"^Input should be greater than (.+)$", r"must be > \1"),
    (r"^Input should be less than or equal to (.+)$", r"must be <= \1"),
    (r"^Input should be less than (.+)$", r"must be < \1"),
    (r"^Input should be a valid integer.*$", "must be an integer"),
    (r"^Input should be a valid number.*$", "must be a number"),
    (r"^Input should be a valid (\w+).*$", r"must be a \1"),
    (r"^Input should be (.+)$", r"must be \1"),
]


def _allowed(msg: str) -> str:
    """Pydantic's wording turned into 'must be ...'."""
    for pattern, replacement in _PHRASES:
        if re.match(pattern, msg):
            return re.sub(pattern, replacement, msg)
    return msg


def parse_spec(document: Any, source: str = "<spec>") -> SweepSpec:
    """Validate a parsed YAML document; raise UsageError listing every problem."""
    if not isinstance(document, dict):
        raise UsageError(f"{source}: a sweep spec must be a mapping, got {type(document).__name__}")
    try:
        return SweepSpec.model_validate(document)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            lines.extend(_describe(err).splitlines())
        raise UsageError([f"{source}: {line}" for line in dict.fromkeys(lines)]) from None



def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """Read a YAML spec, apply ``a.b=value`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such spec file")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    document = apply_overrides(document if document is not None else {}, overrides)
    return parse_spec(document, source=str(path))
