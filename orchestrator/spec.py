"""The sweep spec: pydantic models of one YAML file, validated before Ray starts.

A searchable field holds a scalar or exactly one of the value forms
``{grid: [...]}``, ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}`` (inclusive); integer fields take ``randint``, real-valued ones
``uniform`` and ``loguniform``, and a range's ends must be allowed values of the field.
Numbers are strict: ``"16"`` (text) is not 16. Every problem in a file is collected into one
:class:`~orchestrator.errors.UsageError`, one line per problem, naming the field path, the
bad value and what is allowed. This module never imports Ray or torch.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.errors import UsageError
from orchestrator.overrides import override_document
from orchestrator.spec_yaml import load_yaml

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


Real = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # an int is a real too; text is not
Whole = Annotated[int, Field(strict=True)]  # neither text, nor 4.0, nor true


class Uniform(_Range):
    _form = "uniform"
    uniform: tuple[Real, Real]


class LogUniform(_Range):
    _form = "loguniform"
    loguniform: tuple[Annotated[Real, Field(gt=0)], Annotated[Real, Field(gt=0)]]


class RandInt(_Range):
    _form = "randint"
    randint: tuple[Whole, Whole]


RANGES = {"uniform": Uniform, "loguniform": LogUniform, "randint": RandInt}


def _form_of(value: Any) -> str:
    if isinstance(value, dict):
        keys = list(value)
        return keys[0] if len(keys) == 1 and keys[0] in FORMS else "unknown-form"
    if isinstance(value, (Grid, Choice, Uniform, LogUniform, RandInt)):
        return next(f for f in FORMS if f in type(value).model_fields)
    return "value"


def Searchable(scalar: Any, *, ranges: tuple[str, ...] = ()) -> Any:
    """A field type: ``scalar`` or one of the value forms over ``scalar``.

    ``ranges`` names the range forms the field offers (``randint`` for integers, ``uniform``
    and ``loguniform`` for reals); both ends of a range must be valid values of ``scalar``.
    """
    options = [
        Annotated[scalar, Tag("value")],
        Annotated[Grid[scalar], Tag("grid")],
        Annotated[Choice[scalar], Tag("choice")],
    ] + [Annotated[RANGES[form], Tag(form)] for form in ranges]
    return Annotated[Union[tuple(options)], Discriminator(_form_of), AfterValidator(_ends_within(scalar))]


def _ends_within(scalar: Any):
    adapter = TypeAdapter(scalar)

    def check(value):
        if isinstance(value, _Range):
            for end in getattr(value, value._form):
                try:
                    adapter.validate_python(end)
                except ValidationError as exc:
                    raise PydanticCustomError(
                        "range_end",
                        "{form}: end {end} is not an allowed value ({allowed})",
                        {"form": value._form, "end": end, "allowed": _allowed(exc.errors()[0]["msg"])},
                    ) from None
        return value

    return check


PosInt = Annotated[Whole, Field(ge=1)]
NonNegInt = Annotated[Whole, Field(ge=0)]
PosFloat = Annotated[Real, Field(gt=0)]
NonNegFloat = Annotated[Real, Field(ge=0)]
Scaling = Literal["standard", "rslora"]
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32
INT_RANGES = ("randint",)
REAL_RANGES = ("uniform", "loguniform")


def _float32_positive(value: float) -> float:
    if not value >= FLOAT32_TINY:  # MIUB is computed in float32
        raise ValueError(f"must be >= {FLOAT32_TINY:.4g}, the smallest normal float32")
    return value


def _local_directory(path: str) -> str:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        raise ValueError(
            "must be a directory (local, or a shared filesystem mounted on every node): the store "
            "renames whole files into place, which object stores cannot do; put Ray's state on "
            "the object store with results.storage_path"
        )
    return path


class ModelSpec(_Strict):
    """Which base model: ``zoo/<arch>-<size>``, a Hugging Face id, or a local directory."""

    name: Searchable(str) = "zoo/llama-xs"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    local_files_only: Annotated[bool, Field(strict=True)] = True


class DataSpec(_Strict):
    """Which task, how much of it and how hard."""

    task: Searchable(str) = "synthetic/kv-recall"
    train_size: Searchable(PosInt, ranges=INT_RANGES) = 2000
    eval_size: PosInt = 256
    complexity: Searchable(PosInt, ranges=INT_RANGES) = 4
    seed: NonNegInt = 0
    prompt_field: str = "prompt"
    answer_field: str = "answer"
    text_field: str | None = None
    split: str = "train"
    eval_split: str | None = None


class LoraSpec(_Strict):
    """The PEFT LoRA adapter: rank, alpha, scaling rule and targets."""

    rank: Searchable(PosInt, ranges=INT_RANGES) = 8
    alpha: Searchable(PosFloat, ranges=REAL_RANGES) = 16.0
    scaling: Searchable(Scaling) = "standard"
    target_modules: Annotated[list[str], Field(min_length=1)] = ["q_proj", "v_proj"]
    dropout: Annotated[Real, Field(ge=0, lt=1)] = 0.0


class TrainSpec(_Strict):
    """The fine-tuning loop; ``eval_every`` is in optimizer steps."""

    steps: PosInt = 300
    lr: Searchable(PosFloat, ranges=REAL_RANGES) = 1e-3
    batch_size: PosInt = 16
    seq_len: PosInt = 64
    eval_every: PosInt = 50
    seed: Searchable(NonNegInt, ranges=INT_RANGES) = 0
    warmup_steps: NonNegInt = 0
    grad_clip: NonNegFloat = 1.0


class MiubSpec(_Strict):
    """The MIUB metric (see docs/miub.md)."""

    enabled: Annotated[bool, Field(strict=True)] = True
    estimator: str = "jsd_topk"
    # Modules that register more estimators (docs/miub.md), imported before the spec is
    # checked and in every trial.
    imports: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]] = []
    top_k: PosInt = 32
    temperature: Annotated[Real, AfterValidator(_float32_positive)] = 1.0


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
    reduction_factor: Annotated[Real, Field(gt=1)] = 2.0
    metric: str = "eval_ce"
    mode: Literal["min", "max"] = "min"


class ResourcesSpec(_Strict):
    """What one trial reserves; a trial needs num_workers x gpus_per_worker GPUs."""

    num_workers: PosInt = 1
    cpus_per_worker: PosFloat = 1.0
    gpus_per_worker: NonNegFloat = 0.0
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

    path: Annotated[str, Field(min_length=1), AfterValidator(_local_directory)] = "results"
    storage_path: str | None = None  # Ray's experiment state; a URI (s3://, gs://) works here
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
        if self.data.eval_size % self.resources.num_workers:
            problems.append(
                f"data.eval_size: {self.data.eval_size} is not divisible by resources.num_workers "
                f"({self.resources.num_workers}); every worker evaluates an equal shard (ZeRO-3 needs "
                "the same number of forward passes on each)"
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
        fields = _section_fields(loc[:-1])
        allowed = f"; allowed: {', '.join(fields)}" if fields else ""
        return f"{path}: unknown key{allowed}"
    if err["type"] == "missing":
        return f"{path}: required, missing"
    if err["type"] == "range_end":
        return f"{path}.{msg}"
    if err["type"] == "union_tag_invalid":
        forms = err.get("ctx", {}).get("expected_tags", ", ".join(FORMS)).replace("'", "")
        return f"{path}: {err['input']!r} is not a plain value or one of the forms {forms}"
    if not loc:  # cross-field problems already name their fields
        return msg
    return f"{path}: {err['input']!r} is not allowed ({_allowed(msg)})"


def _section_fields(loc: list[str]) -> list[str]:
    """The field names of the spec section at ``loc`` (empty if it is not a section)."""
    model: Any = SweepSpec
    for part in loc:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


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


def parse_spec(document: Any, source: str = "<spec>", *, problems: list[str] = ()) -> SweepSpec:
    """Validate a parsed YAML document, then what its trials will need (tasks, zoo models,
    files, estimators: :mod:`orchestrator.preflight`); raise UsageError listing every problem.
    ``problems`` are earlier ones (bad ``--set`` flags) to report with these."""
    lines = list(problems)
    if not isinstance(document, dict):
        raise UsageError(lines + [f"{source}: a sweep spec must be a mapping, got {type(document).__name__}"])
    try:
        spec = SweepSpec.model_validate(document)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            lines.extend(f"{source}: {line}" for line in _describe(err).splitlines())
        raise UsageError(list(dict.fromkeys(lines))) from None
    from orchestrator.preflight import trial_problems  # it imports this module

    lines += [f"{source}: {line}" for line in trial_problems(spec)]
    if lines:
        raise UsageError(lines)
    return spec


def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """Read a YAML spec, apply ``a.b=value`` overrides, validate."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a spec file (e.g. search_spaces/quickstart.yaml)")
    if not path.is_file():
        raise UsageError(f"{path}: no such spec file")
    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); a spec is a YAML file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise UsageError(f"{path}: a sweep spec must be a mapping, got {type(document).__name__}")
    document, problems = override_document(document, overrides)
    return parse_spec(document, source=str(path), problems=problems)
