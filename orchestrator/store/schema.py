"""The result row schema: one row per (experiment, trial, evaluation step).

``SCHEMA_VERSION`` is written into every file's metadata; bump it when a column changes
meaning. Column meanings and units are documented in docs/results.md.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
META_SCHEMA_VERSION = b"lorasweep.schema_version"
META_PACKAGE_VERSION = b"lorasweep.version"

# ``experiment`` is the hive partition (experiment=<name>/), not a column inside files.
FIELDS: list[pa.Field] = [
    pa.field("trial_id", pa.string()),
    pa.field("attempt", pa.int32()),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("config_hash", pa.string()),
    pa.field("model", pa.string()),
    pa.field("model_params", pa.int64()),
    pa.field("model_params_non_embedding", pa.int64()),
    pa.field("trainable_params", pa.int64()),
    pa.field("task", pa.string()),
    pa.field("train_size", pa.int64()),
    pa.field("eval_size", pa.int64()),
    pa.field("complexity", pa.int64()),
    pa.field("rank", pa.int64()),
    pa.field("alpha", pa.float64()),
    pa.field("scaling", pa.string()),
    pa.field("scale_factor", pa.float64()),
    pa.field("target_modules", pa.string()),
    pa.field("lr", pa.float64()),
    pa.field("seed", pa.int64()),
    pa.field("batch_size", pa.int64()),
    pa.field("step", pa.int64()),
    pa.field("tokens_seen", pa.int64()),
    pa.field("train_loss", pa.float64()),
    pa.field("grad_norm", pa.float64()),
    pa.field("eval_ce", pa.float64()),
    pa.field("eval_ppl", pa.float64()),
    pa.field("eval_acc", pa.float64()),
    pa.field("miub", pa.float64()),
    pa.field("miub_layers", pa.map_(pa.string(), pa.float64())),
    pa.field("miub_estimator", pa.string()),
    pa.field("wall_time_s", pa.float64()),
    pa.field("node", pa.string()),
    pa.field("num_workers", pa.int32()),
    pa.field("zero_stage", pa.int32()),
    pa.field("precision", pa.string()),
    pa.field("package_versions", pa.string()),
    pa.field("git_commit", pa.string()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")),
]
SCHEMA = pa.schema(FIELDS)
COLUMNS = [f.name for f in FIELDS]
