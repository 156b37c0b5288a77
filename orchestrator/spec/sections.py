"""The sweep spec's sections: one pydantic model per YAML section, every field described.

These models are the one place where a default lives. The driver validates a whole spec
with :class:`SweepSpec`; a trial validates its resolved configuration with
:class:`~orchestrator.spec.trials.TrialConfig`, built from the same section models, so code
inside a trial reads typed fields and never restates a default. ``docs/spec.md`` is
generated from the field descriptions (``python -m orchestrator.spec.docs``).
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from orchestrator.spec.forms import (
    FLOAT32_TINY,
    INT_RANGES,
    REAL_RANGES,
    SEED_RANGES,
    SIZE_RANGES,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Real,
    Scaling,
    Searchable,
    _Strict,
)


def _float32_positive(value: float) -> float:
    if not value >= FLOAT32_TINY:  # MIUB is computed in float32
        raise ValueError(f"must be >= {FLOAT32_TINY:.4g}, the smallest normal float32")
    return value


# URI schemes pyarrow.fs.FileSystem.from_uri opens (the store reads and writes through it).
STORE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def _store_location(path: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", path)
    if match and match.group(1).lower() not in STORE_SCHEMES:
        raise ValueError(
            f"{match.group(1)}:// is not a filesystem pyarrow opens; allowed: a directory, or a URI "
            f"starting with {', '.join(s + '://' for s in STORE_SCHEMES)}"
        )
    return path


Flag = Annotated[bool, Field(strict=True)]
ModuleName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]


class ModelSpec(_Strict):
    """Which base model: ``zoo/<arch>-<size>``, a Hugging Face id, or a local directory."""

    name: Searchable(str) = Field(
        "zoo/llama-xs", description="`zoo/<arch>-<size>` (see `lorasweep models list`), a Hugging Face id, or a local directory")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="training precision: auto is bf16 on a GPU with native bf16, else fp32; float16 is fp16 "
        "with DeepSpeed's dynamic loss scaling (GPU only); the precision column records what ran")
    local_files_only: Flag = Field(
        True, description="never download: hub ids must already be in the local Hugging Face cache")


class DataSpec(_Strict):
    """Which task, how much of it and how hard."""

    task: Searchable(str) = Field(
        "synthetic/kv-recall", description="a synthetic task (`synthetic/kv-recall`, ...), `hf:<dataset>` or `file:<path>`")
    train_size: Searchable(PosInt, ranges=SIZE_RANGES) = Field(2000, description="training examples")
    eval_size: PosInt = Field(256, description="evaluation examples (split evenly across workers)")
    complexity: Searchable(PosInt, ranges=INT_RANGES) = Field(
        4, description="the synthetic task's difficulty knob (pairs, modulus, states)")
    seed: NonNegInt = Field(0, description="seed of the generated data (independent of train.seed)")
    prompt_field: str = Field("prompt", description="prompt column of `hf:`/`file:` data")
    answer_field: str = Field("answer", description="answer column of `hf:`/`file:` data")
    text_field: str | None = Field(None, description="a single text column to train on instead of prompt/answer")
    split: str = Field("train", description="split read for training")
    eval_split: str | None = Field(None, description="split read for evaluation (default: held out from `split`)")
    truncation: Literal["error", "left"] = Field(
        "error", description="an example longer than train.seq_len: error names it; left drops prompt tokens from the "
        "start (the answer is never cut: one that cannot fit is an error naming the example)")
    chat_template: Flag = Field(
        False, description="render each prompt as a user turn through the tokenizer's chat template (hub models "
        "that ship one); the answer follows the assistant prefix")


class LoraSpec(_Strict):
    """The PEFT LoRA adapter: rank, alpha, scaling rule and targets."""

    rank: Searchable(PosInt, ranges=SIZE_RANGES) = Field(8, description="LoRA rank r")
    alpha: Searchable(PosFloat, ranges=REAL_RANGES) = Field(16.0, description="LoRA alpha")
    scaling: Searchable(Scaling) = Field(
        "standard", description="standard multiplies B A x by alpha/r, rslora by alpha/sqrt(r)")
    target_modules: Annotated[list[str], Field(min_length=1)] = Field(
        ["q_proj", "v_proj"], description="module names to adapt (mapped onto fused layers such as Phi3's qkv_proj)")
    dropout: Annotated[Real, Field(ge=0, lt=1)] = Field(0.0, description="dropout on the LoRA branch's input")


class TrainSpec(_Strict):
    """The fine-tuning loop; ``eval_every`` is in optimizer steps."""

    steps: PosInt = Field(300, description="optimizer steps")
    lr: Searchable(PosFloat, ranges=REAL_RANGES) = Field(1e-3, description="AdamW learning rate")
    batch_size: PosInt = Field(
        16, description="global batch in sequences per optimizer step: micro_batch_size x accumulation x workers")
    micro_batch_size: PosInt | None = Field(
        None, description="sequences per forward/backward on one worker (default: batch_size / workers, no "
        "accumulation); gradient accumulation steps = batch_size / (micro_batch_size x workers)")
    gradient_checkpointing: Flag = Field(
        False, description="recompute each layer's activations in the backward pass instead of storing them")
    eval_batch_size: PosInt = Field(64, description="sequences per evaluation forward on one worker")
    eval_chunk_tokens: PosInt = Field(
        128, description="answer tokens whose full-vocabulary logits exist at once in an evaluation (bounds its memory)")
    seq_len: PosInt = Field(
        64, description="most tokens per sequence (prompt + answer); each batch is padded to its longest example only")
    eval_every: PosInt = Field(50, description="evaluate (and checkpoint) every this many steps, and at the last")
    seed: Searchable(NonNegInt, ranges=SEED_RANGES) = Field(
        0, description="adapter init and batch order; a grid under random/optuna search replicates each configuration")
    warmup_steps: NonNegInt = Field(0, description="linear learning-rate warm-up, in steps")
    grad_clip: NonNegFloat = Field(1.0, description="gradient-norm clipping (0 turns it off)")
    divergence_factor: NonNegFloat = Field(
        4.0, description="a trial diverges when its mean train loss since the last evaluation exceeds this many times "
        "its first step's loss (0 turns the rule off; a non-finite loss or adapter weight always counts)")

    def accumulation(self, workers: int) -> int:
        """Gradient accumulation steps for ``workers`` (validated to divide evenly by the spec)."""
        return self.batch_size // (self.micro(workers) * workers)

    def micro(self, workers: int) -> int:
        """Sequences per forward/backward on one worker."""
        return self.micro_batch_size if self.micro_batch_size is not None else self.batch_size // workers

    @model_validator(mode="after")
    def _micro_fits(self):
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"train.micro_batch_size: {self.micro_batch_size} does not divide train.batch_size "
                f"({self.batch_size}); allowed: a divisor of batch_size / resources.num_workers"
            )
        return self


class MiubSpec(_Strict):
    """The MIUB metric (see docs/miub.md): one or more estimators run in every evaluation."""

    enabled: Flag = Field(True, description="compute MIUB in every evaluation pass")
    estimators: Annotated[list[str], Field(min_length=1)] = Field(
        ["jsd_topk"], description="registered estimators (docs/miub.md), each to its own column; the first also fills miub, miub_layers, miub_estimator")
    estimator: str = Field(
        "jsd_topk", description="the first of `estimators`; giving it alone means `estimators: [it]`")
    imports: list[ModuleName] = Field(
        [], description="modules that register more estimators, imported before the spec is checked and in every trial")
    top_k: Annotated[int, Field(strict=True)] | Real | str = Field(
        32, description="features per token for jsd_topk, chosen by |frozen output|: a count (capped at the module's width), a fraction of the width such as 0.25, or all")
    temperature: Annotated[Real, AfterValidator(_float32_positive)] = Field(
        1.0, description="softmax temperature over the selected features (jsd_topk, jsd_full)")
    noise: PosFloat = Field(
        0.1, description="club_gauss: noise variance of its Gaussian channel, as a fraction of each output's mean per-feature variance")
    max_tokens: PosInt | None = Field(
        None, description="measure MIUB on a random subset of about this many real evaluation tokens per worker (default: all); miub_se reports the standard error")

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value):
        """A count, a fraction of the module's width, or all: one message for the three forms."""
        if value == "all" or (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value <= 1):
            return value
        raise ValueError("must be a count (an integer >= 1), a fraction of the module's width in (0, 1], or 'all'")

    @model_validator(mode="before")
    @classmethod
    def _first_estimator(cls, data):
        if not isinstance(data, dict):
            return data
        listed, first = data.get("estimators"), data.get("estimator")
        if listed is None and first is not None:
            data = {**data, "estimators": [first]}
        elif isinstance(listed, list) and listed and first is None:
            data = {**data, "estimator": listed[0]}
        elif isinstance(listed, list) and listed and first != listed[0]:
            raise ValueError(f"estimator {first!r} must be the first of estimators {listed!r} (or leave estimator out)")
        return data

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.estimators)) != len(self.estimators):
            raise ValueError(f"estimators lists a name twice: {self.estimators}")
        return self


class MetricsSpec(_Strict):
    """What every evaluation reports besides CE, PPL and accuracy."""

    miub: MiubSpec = Field(MiubSpec(), description="the MIUB metric")


class SearchSpec(_Strict):
    """How configurations are chosen: every grid point, random draws, Optuna, or the law
    search (configurations that most narrow a joint scaling law's exponents)."""

    algorithm: Literal["grid", "random", "optuna", "law"] = Field(
        "grid", description="grid enumerates, random and optuna sample, law picks what most narrows the law's exponents")
    num_samples: PosInt = Field(1, description="configurations drawn by random/optuna (each runs once per seed)")
    sampler: Literal["tpe", "cmaes", "nsga2"] = Field("tpe", description="Optuna sampler")
    metric: str | list[str] = Field("eval_ce", description="objective(s) Optuna sees: the seeds' mean at the last step")
    mode: Literal["min", "max"] | list[Literal["min", "max"]] = Field("min", description="one mode, or one per metric")
    study_name: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Optuna study in the experiment directory (default: the sweep name)")
    law_axes: list[str] = Field(
        [], description="law search: 2 or 3 searched numeric fields (dotted paths, e.g. data.train_size, lora.rank), the law's axes in order")
    law_form: Literal["multiplicative", "additive"] = Field(
        "multiplicative", description="law search: L = A x1^-a x2^-b (x3^-c) + E, or L = E + A/x1^a + B/x2^b (+ C/x3^c)")
    law_candidates: PosInt = Field(
        64, description="law search: candidates drawn from the space per suggestion (all combinations when the axes are small choices)")
    law_initial: PosInt | None = Field(
        None, description="law search: space-filling configurations before the law guides (default and minimum: the law's parameters + 2)")
    law_bootstrap: PosInt = Field(200, description="law search: bootstrap resamples when scoring a candidate")


class SchedulerSpec(_Strict):
    """Early stopping: ``fifo`` runs every trial to the end; ``asha``, ``hyperband``,
    ``median`` and ``curve`` stop weak ones (docs/search.md). Times are optimizer steps."""

    type: Literal["fifo", "asha", "hyperband", "median", "curve"] = Field(
        "fifo", description="fifo runs every trial to the end; asha, hyperband (synchronous, pauses trials), "
        "median (median stopping rule) and curve (power-law extrapolation of each curve) stop weak ones")
    grace_period: PosInt = Field(
        1, description="asha, median, curve: steps before a trial can be stopped (hyperband: unused)")
    reduction_factor: Annotated[Real, Field(gt=1)] = Field(
        2.0, description="asha, hyperband: 1/reduction_factor of trials go on at each rung")
    min_samples: PosInt = Field(
        3, description="median: other trials that must have reached a step before the median is trusted")
    interval: Annotated[Real, Field(gt=0, lt=1)] = Field(
        0.9, description="curve: coverage of the predicted final value's interval (a bootstrap at the curve's noise level)")
    min_points: Annotated[int, Field(strict=True, ge=4)] = Field(
        4, description="curve: evaluations a curve needs before it is fitted (the law has 3 parameters)")
    metric: str = Field("eval_ce", description="what the scheduler compares")
    mode: Literal["min", "max"] = Field("min", description="min or max")


class ResourcesSpec(_Strict):
    """What one trial reserves; a trial needs num_workers x gpus_per_worker GPUs."""

    num_workers: PosInt = Field(1, description="data-parallel workers per trial (more than 1: Ray Train)")
    cpus_per_worker: PosFloat = Field(1.0, description="CPUs each worker reserves")
    gpus_per_worker: NonNegFloat = Field(0.0, description="GPUs each worker reserves")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how a trial's workers are placed on nodes")
    max_concurrent_trials: PosInt = Field(2, description="trials running at once")
    gpu_memory_gb: PosFloat | None = Field(
        None, description="memory of one GPU in GiB: a trial whose estimated per-worker peak (docs/memory.md) is "
        "larger fails the spec check before Ray starts")


class DeepSpeedSpec(_Strict):
    """ZeRO stage, or a full DeepSpeed JSON config that lorasweep fills in."""

    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="ZeRO stage")
    config: str | None = Field(None, description="a DeepSpeed JSON config file; lorasweep sets batch, lr and clipping")


class FailuresSpec(_Strict):
    """What happens when a trial fails."""

    max_failures: NonNegInt = Field(1, description="retries of a failed trial from its last checkpoint")


class ResultsSpec(_Strict):
    """Where the Parquet store and Ray's experiment directory live."""

    path: Annotated[str, Field(min_length=1), AfterValidator(_store_location)] = Field(
        "results", description="the Parquet store (hive-partitioned by experiment): a directory or a pyarrow.fs "
                               "URI (s3://, gs://, hdfs://, file://); inside a Ray job a relative path is refused")
    storage_path: Annotated[str, Field(min_length=1), AfterValidator(_store_location)] | None = Field(
        None, description="Ray's experiment state (default: <path>/_ray, a URI when path is one); a directory or a URI")
    flush_rows: PosInt = Field(256, description="rows buffered before a file is written")
    flush_seconds: PosFloat = Field(10.0, description="seconds before buffered rows are written anyway")


def _law_problems(spec) -> list[str]:
    """The law search needs 2-3 searched numeric axes and one positive metric to fit."""
    from orchestrator.search.rules import search_axes

    search, problems = spec.search, []
    searched = {path for path, _ in search_axes(spec)}
    if not 2 <= len(search.law_axes) <= 3 or len(set(search.law_axes)) != len(search.law_axes):
        problems.append(f"search.law_axes: {search.law_axes} must name 2 or 3 distinct fields; "
                        f"allowed: searched fields ({', '.join(sorted(searched)) or 'none'})")
    for path in search.law_axes:
        if path not in searched:
            problems.append(f"search.law_axes: {path!r} is not a searched field (a choice or a "
                            f"range); allowed: {', '.join(sorted(searched)) or 'none'}")
    if isinstance(search.metric, list):
        problems.append(f"search.metric: {search.metric} names several metrics; the law search "
                        f"fits one (e.g. eval_ce)")
    return problems


class SweepSpec(_Strict):
    """One sweep: everything a run needs, validated up front."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="the experiment's name: its partition in the store and its Ray experiment")
    model: ModelSpec = Field(ModelSpec(), description="the base model")
    data: DataSpec = Field(DataSpec(), description="the task and its size")
    lora: LoraSpec = Field(LoraSpec(), description="the adapter")
    train: TrainSpec = Field(TrainSpec(), description="the training loop")
    metrics: MetricsSpec = Field(MetricsSpec(), description="metrics beyond CE, PPL and accuracy")
    search: SearchSpec = Field(SearchSpec(), description="how configurations are chosen")
    scheduler: SchedulerSpec = Field(SchedulerSpec(), description="early stopping")
    resources: ResourcesSpec = Field(ResourcesSpec(), description="what a trial reserves")
    deepspeed: DeepSpeedSpec = Field(DeepSpeedSpec(), description="the DeepSpeed engine")
    failures: FailuresSpec = Field(FailuresSpec(), description="retries")
    results: ResultsSpec = Field(ResultsSpec(), description="where results go")

    @model_validator(mode="after")
    def _cross_field(self):
        from orchestrator.search.rules import search_problems

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
        elif self.train.micro_batch_size is not None and self.train.batch_size % (
            self.train.micro_batch_size * self.resources.num_workers
        ):
            per_worker = self.train.batch_size // self.resources.num_workers
            problems.append(
                f"train.micro_batch_size: {self.train.micro_batch_size} does not divide the per-worker batch "
                f"{per_worker} (train.batch_size {self.train.batch_size} / resources.num_workers "
                f"{self.resources.num_workers}); allowed: a divisor of {per_worker}"
            )
        if self.data.eval_size % self.resources.num_workers:
            problems.append(
                f"data.eval_size: {self.data.eval_size} is not divisible by resources.num_workers "
                f"({self.resources.num_workers}); every worker evaluates an equal shard (ZeRO-3 needs "
                "the same number of forward passes on each)"
            )
        problems += search_problems(self)
        if self.search.algorithm == "law":
            problems += _law_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self
