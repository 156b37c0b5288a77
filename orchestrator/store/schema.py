"""The result row schema: one row per (experiment, trial, evaluation step).

``SCHEMA_VERSION`` is written into every file's metadata; bump it when a column changes
meaning. Each column's unit and meaning live here, next to its type, and the column table
in docs/results.md is generated from them (:func:`markdown_table`; tests/test_store.py checks
the page against it), so the two cannot drift apart.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
META_SCHEMA_VERSION = b"lorasweep.schema_version"
META_PACKAGE_VERSION = b"lorasweep.version"

STATUSES = ("running", "completed", "stopped", "error", "diverged")

# (field, unit, meaning). ``experiment`` is the hive partition (experiment=<name>/), not a
# column inside files; readers add it from the folder name.
_COLUMNS: list[tuple[pa.Field, str, str]] = [
    (pa.field("trial_id", pa.string()), "", "Ray Tune trial id; stable across retries and driver restarts"),
    (pa.field("attempt", pa.int32()), "", "1 for a trial's first run, +1 per retry or resumed run; the latest attempt's row wins"),
    (pa.field("status", pa.string()), "", "running (more rows follow), completed, stopped (ended early, e.g. by ASHA), error, diverged (non-finite loss or adapter weight, or a loss rising above train.divergence_factor; see stop_reason)"),
    (pa.field("error", pa.string()), "", "last line of a failed trial's traceback; null unless status is error"),
    (pa.field("stop_reason", pa.string()), "", "why a trial ended before its last step: 'diverged at step N: ...' from the trial, or the curve scheduler's reason; null otherwise"),
    (pa.field("config_hash", pa.string()), "", "12 hex digits of the trial config without its seed: the seeds of one configuration share it"),
    (pa.field("model", pa.string()), "", "base model: zoo/<arch>-<size>, a Hugging Face id or a local path"),
    (pa.field("model_params", pa.int64()), "parameters", "base model parameter count, embeddings included"),
    (pa.field("model_params_non_embedding", pa.int64()), "parameters", "base model parameter count without embeddings"),
    (pa.field("trainable_params", pa.int64()), "parameters", "LoRA adapter parameter count"),
    (pa.field("task", pa.string()), "", "fine-tuning task: synthetic/<name>, hf:<name> or file:<path>"),
    (pa.field("train_size", pa.int64()), "examples", "training examples"),
    (pa.field("eval_size", pa.int64()), "examples", "evaluation examples"),
    (pa.field("complexity", pa.int64()), "", "the task's complexity knob (e.g. key-value pairs, modulus)"),
    (pa.field("rank", pa.int64()), "", "LoRA rank r"),
    (pa.field("alpha", pa.float64()), "", "LoRA alpha"),
    (pa.field("scaling", pa.string()), "", "standard (alpha/r) or rslora (alpha/sqrt(r))"),
    (pa.field("scale_factor", pa.float64()), "", "the multiplier applied to B A x: alpha/r or alpha/sqrt(r)"),
    (pa.field("target_modules", pa.string()), "", "adapted module names, comma-separated"),
    (pa.field("lr", pa.float64()), "", "peak learning rate"),
    (pa.field("seed", pa.int64()), "", "trial seed (adapter init and data order)"),
    (pa.field("batch_size", pa.int64()), "sequences", "global batch size per optimizer step"),
    (pa.field("step", pa.int64()), "optimizer steps", "steps done at this evaluation; null on an error row of a trial that never reported"),
    (pa.field("tokens_seen", pa.int64()), "tokens", "training tokens (non-padding) consumed so far"),
    (pa.field("train_loss", pa.float64()), "nats per token", "mean training loss over the steps since the previous evaluation"),
    (pa.field("grad_norm", pa.float64()), "", "adapter gradient L2 norm before clipping, averaged over the steps since the previous evaluation (NaN when unavailable)"),
    (pa.field("eval_ce", pa.float64()), "nats per answer token", "evaluation cross-entropy over answer tokens"),
    (pa.field("eval_ppl", pa.float64()), "", "exp(eval_ce)"),
    (pa.field("eval_acc", pa.float64()), "fraction", "exact-match accuracy of answers, 0 to 1"),
    (pa.field("miub", pa.float64()), "nats", "MIUB over all adapted modules (docs/miub.md); null when disabled"),
    (pa.field("miub_layers", pa.map_(pa.string(), pa.float64())), "nats", "MIUB per adapted module: module name -> value"),
    (pa.field("miub_estimator", pa.string()), "", "MIUB estimator name (e.g. jsd_topk)"),
    (pa.field("miub_se", pa.float64()), "nats", "standard error over evaluation tokens of miub (per-token estimators; with metrics.miub.max_tokens, of the subsample); null otherwise"),
    (pa.field("miub_jsd_topk", pa.float64()), "nats", "MIUB by jsd_topk (ln 2 - JSD on the top_k features by frozen magnitude); null unless in metrics.miub.estimators"),
    (pa.field("miub_jsd_full", pa.float64()), "nats", "MIUB by jsd_full (ln 2 - JSD over all of a module's features); null unless in metrics.miub.estimators"),
    (pa.field("miub_club_gauss", pa.float64()), "nats", "CLUB upper bound on the mutual information between frozen and LoRA outputs through a Gaussian noise channel (docs/miub.md); null unless in metrics.miub.estimators"),
    (pa.field("wall_time_s", pa.float64()), "seconds", "training time since the trial started, carried across restores"),
    (pa.field("curve_pred", pa.float64()), "the scheduler metric's unit", "scheduler curve: the final value (at train.steps) predicted from this trial's configuration's curve so far; null under other schedulers and before a curve is fitted"),
    (pa.field("curve_lo", pa.float64()), "the scheduler metric's unit", "scheduler curve: low end of the predicted final value's interval (scheduler.interval)"),
    (pa.field("curve_hi", pa.float64()), "the scheduler metric's unit", "scheduler curve: high end of the predicted final value's interval"),
    (pa.field("node", pa.string()), "", "hostname of the node that ran the trial (rank 0 worker)"),
    (pa.field("num_workers", pa.int32()), "", "data-parallel workers of the trial"),
    (pa.field("zero_stage", pa.int32()), "", "DeepSpeed ZeRO stage, 0 to 3"),
    (pa.field("precision", pa.string()), "", "what the trial trained in: fp32, bf16 or fp16 (from model.dtype, the device and a user DeepSpeed config)"),
    (pa.field("optimizer", pa.string()), "", "the optimizer class DeepSpeed ran (e.g. FusedAdam, or torch's AdamW where fused Adam cannot be built)"),
    (pa.field("package_versions", pa.string()), "", "JSON object: package name -> version on the driver"),
    (pa.field("run_id", pa.string()), "", "the lorasweep run that wrote the row (UTC start time and driver pid); a resumed run keeps its id, a run with --append gets a new one"),
    (pa.field("git_commit", pa.string()), "", "commit of the lorasweep checkout that ran the sweep; null for an installed wheel"),
    (pa.field("timestamp", pa.timestamp("us", tz="UTC")), "UTC", "when the driver received the row"),
]
FIELDS: list[pa.Field] = [field for field, _, _ in _COLUMNS]
SCHEMA = pa.schema(FIELDS)
COLUMNS = [f.name for f in FIELDS]
PARTITION = pa.field("experiment", pa.string())
DOCS = {"experiment": ("", "sweep name; the hive partition folder experiment=<name>/")}
DOCS.update({field.name: (unit, meaning) for field, unit, meaning in _COLUMNS})

# Columns fixed by a trial's config and present in every row, error rows included (the
# callback fills them from the config): equal in every row and attempt of one trial, so a
# filter on them may run before deduplication (and prune files) without changing results.
TRIAL_COLUMNS = frozenset({
    "experiment", "trial_id", "config_hash", "model", "task", "train_size", "eval_size", "complexity",
    "rank", "alpha", "scaling", "target_modules", "lr", "seed", "batch_size",
    "num_workers", "zero_stage",
})


def dataset_schema() -> pa.Schema:
    """The schema a reader sees: the partition column first, then the file columns."""
    return SCHEMA.insert(0, PARTITION)


def markdown_table() -> str:
    """The column table of docs/results.md."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    for field in dataset_schema():
        unit, meaning = DOCS[field.name]
        lines.append(f"| `{field.name}` | `{field.type}` | {unit} | {meaning} |")
    return "\n".join(lines)
