"""From result rows to analysis points: one observation per trial.

A trial reports a row at every evaluation step; a scaling law compares trials, so each
trial is reduced to one row: its last step (``final``) or the step with its lowest
``eval_ce`` (``best``, the early-stopping choice; every metric is then read from that same
row so metrics stay comparable). Rows with status ``error`` carry no metrics and are
dropped before anything else. A *configuration* is everything but the seed: its
``config_hash`` when present, else a key derived from the configuration columns.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from orchestrator.errors import UsageError
from orchestrator.store.latest import latest_indices

from .axes import DERIVED, sources
from .names import AXES, METRICS, STEPS  # noqa: F401  (re-exported for callers)
# Everything that defines a configuration apart from the seed (config_hash stands for these).
CONFIG_COLUMNS = ("experiment", "model", "model_params", "trainable_params", "task",
                  "train_size", "complexity", "rank", "alpha", "scaling", "scale_factor",
                  "lr", "target_modules")
# Read whenever present: identity, selection, configuration, and the columns of the
# agreement (eval_acc) and rsLoRA (eval_ce, rank, scaling) checks.
OPTIONAL = ("experiment", "status", "attempt", "seed", "config_hash", "run_id", "eval_acc", "eval_ce", "miub_layers",
            "rank", "scaling") + CONFIG_COLUMNS


def _is_numeric(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def validate(schema: pa.Schema, x, y, by) -> None:
    """Check every requested column at once; one UsageError lists every problem."""
    names = set(schema.names)
    numeric = sorted(n for n in schema.names if _is_numeric(schema.field(n).type))
    problems = []
    for flag, cols, need_numeric in (("--x", x, True), ("--y", y, True), ("--by", by, False)):
        for col in cols:
            if col in DERIVED and col not in names:
                missing = [c for c in DERIVED[col] if c not in numeric]
                if missing:
                    problems.append(f"{flag}: {col!r} is computed from "
                                    f"{', '.join(DERIVED[col])}; missing or not numeric: "
                                    f"{', '.join(missing)}")
            elif col not in names:
                problems.append(f"{flag}: unknown column {col!r}")
            elif need_numeric and col not in numeric:
                problems.append(f"{flag}: column {col!r} is not numeric")
    for col in set(by) & set(x):
        problems.append(f"--by: column {col!r} is also the x axis")
    for col in ("trial_id", "step"):
        if col not in names:
            problems.append(f"results have no {col!r} column")
    if problems:
        problems.append(f"numeric columns: {', '.join(numeric)}")
        raise UsageError(problems)


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-decoded column, so codes from different files never mix."""
    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


def status_counts(table: pa.Table) -> dict[str, int]:
    """Rows per status, for the report's account of what was read."""
    if "status" not in table.column_names:
        return {"(no status column)": table.num_rows}
    vc = pc.value_counts(pc.fill_null(table["status"], "(null)").combine_chunks())
    return {str(v["values"]): int(v["counts"]) for v in vc.to_pylist()}


def drop_errors(table: pa.Table) -> pa.Table:
    """Rows of status ``error`` have null metrics: they never enter an analysis."""
    if "status" not in table.column_names:
        return table
    return table.filter(pc.fill_null(pc.not_equal(table["status"], "error"), True))


def load(data, x=(), y=(), by=(), experiment: str | None = None) -> pa.Table:
    """Read the needed columns of a Table or Dataset for one experiment (or all)."""
    if not isinstance(data, (pa.Table, pads.Dataset)):
        raise UsageError(f"expected a pyarrow Table or Dataset, got {type(data).__name__}")
    validate(data.schema, x, y, by)
    wanted = ["trial_id", "step", *sources(x), *y, *by, *OPTIONAL]
    cols = list(dict.fromkeys(c for c in wanted if c in data.schema.names))
    if isinstance(data, pads.Dataset):
        exp_type = data.schema.field("experiment").type if "experiment" in cols else None
        pushdown = None
        if experiment is not None and exp_type is not None and pa.types.is_string(exp_type):
            pushdown = pc.field("experiment") == experiment
        try:
            table = data.to_table(columns=cols, filter=pushdown)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise UsageError(f"cannot read the results: {' '.join(str(exc).split())[:400]}") \
                from exc
    else:
        table = data.select(cols)
    table = pa.table({n: _plain(table[n]) for n in table.column_names})
    if "experiment" in table.column_names:
        table = table.set_column(table.column_names.index("experiment"), "experiment",
                                 table["experiment"].cast(pa.string()))
        if experiment is not None:
            table = table.filter(pc.equal(table["experiment"], experiment))
    elif experiment is not None:
        table = table.slice(0, 0)
    return table


def codes(col: pa.ChunkedArray) -> np.ndarray:
    """Integer code per row (equal values, equal codes; null is its own code, -1)."""
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        col = pa.chunked_array([pa.array([None if v is None else repr(v)
                                          for v in col.to_pylist()], pa.string())])
    enc = pc.dictionary_encode(col).combine_chunks()
    return pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _combine(columns: list[np.ndarray], n: int) -> np.ndarray:
    if not columns:
        return np.zeros(n, dtype=np.int64)
    return np.unique(np.column_stack(columns), axis=0, return_inverse=True)[1].ravel()


def config_keys(table: pa.Table) -> np.ndarray:
    """Configuration id per row: config_hash where present, else the derived key."""
    derived = _combine([codes(table[c]) for c in CONFIG_COLUMNS if c in table.column_names],
                       table.num_rows)
    if "config_hash" not in table.column_names:
        return derived
    h = codes(table["config_hash"])
    return _combine([h, np.where(h < 0, derived, -1)], table.num_rows)


def _latest_attempt(table: pa.Table, trial: np.ndarray, s: np.ndarray):
    """Keep one row per (trial, step): a retried trial's latest attempt wins (ties: the later
    row), through the store's one latest-row selection."""
    if "attempt" not in table.column_names:
        return table, trial, s
    keys = pa.table({"trial": trial, "step": s, "attempt": table["attempt"]})
    keep = latest_indices(keys, ("trial", "step"), ("attempt",))
    if keep is None:
        return table, trial, s
    rows = keep.to_numpy()
    return table.take(keep), trial[rows], s[rows]


def _last_per_trial(order: np.ndarray, trial: np.ndarray) -> np.ndarray:
    """Row indices of each trial's last row in ``order`` (sorted by trial first)."""
    return order[np.r_[trial[order][1:] != trial[order][:-1], True]]


def _without_failed_trials(table: pa.Table, trial: np.ndarray, s: np.ndarray):
    """Drop every trial whose last row has status ``error``: it never finished, and its
    earlier rows would pass for a final result. (An error row before a later step belongs
    to an attempt that was retried, and stays.)"""
    if "status" not in table.column_names:
        return table, trial, s
    last = _last_per_trial(np.lexsort((s, trial)), trial)
    status = np.asarray(pc.fill_null(table["status"], "").to_pylist(), dtype=object)
    failed = np.unique(trial[last][status[last] == "error"])
    if failed.size == 0:
        return table, trial, s
    keep = np.flatnonzero(~np.isin(trial, failed))
    return table.take(pa.array(keep)), trial[keep], s[keep]


def reduce_steps(table: pa.Table, step: str = "final") -> pa.Table:
    """One row per trial (experiment, trial_id) that did not end in error: its final step,
    or its lowest-eval_ce step."""
    if step not in STEPS:
        raise UsageError(f"--step: {step!r} is not one of {', '.join(STEPS)}")
    if table.num_rows == 0:
        return table.append_column("config", pa.array([], pa.int64()))
    ids = [codes(table["trial_id"])]
    if "experiment" in table.column_names:
        ids.insert(0, codes(table["experiment"]))
    trial = _combine(ids, table.num_rows)
    s = pc.fill_null(table["step"].cast(pa.float64()), -np.inf).to_numpy()
    table, trial, s = _latest_attempt(table, trial, s)
    table, trial, s = _without_failed_trials(table, trial, s)
    if table.num_rows == 0:
        return table.append_column("config", pa.array([], pa.int64()))
    if step == "best" and "eval_ce" in table.column_names:
        ce = table["eval_ce"].cast(pa.float64()).to_numpy(zero_copy_only=False)
        ce = np.where(np.isfinite(ce), ce, np.inf)
        # lowest eval_ce wins, later step breaks ties; a trial with no finite CE keeps its
        # final step because all its keys are +inf.
        order = np.lexsort((s, -ce, trial))
    else:
        order = np.lexsort((s, trial))
    last = _last_per_trial(order, trial)
    reduced = table.take(pa.array(last))
    reduced = reduced.append_column("config", pa.array(config_keys(reduced)))
    return latest_run_per_seed(reduced)


def latest_run_per_seed(table: pa.Table) -> pa.Table:
    """A configuration's seed run again (``lorasweep run --append``) is the same replicate, not
    another seed: of the trials sharing (configuration, seed), only the latest run's counts.
    Run ids start with their UTC start time, so they sort by age."""
    if "run_id" not in table.column_names or "seed" not in table.column_names or table.num_rows < 2:
        return table
    run = np.asarray(pc.fill_null(table["run_id"].cast(pa.string()), "").to_pylist(), dtype=object)
    if len(set(run)) < 2:
        return table
    key = _combine([table["config"].to_numpy(), codes(table["seed"])], table.num_rows)
    order = sorted(range(table.num_rows), key=lambda i: (key[i], run[i]))
    keep = [i for n, i in enumerate(order) if n + 1 == len(order) or key[order[n + 1]] != key[i]]
    return table.take(pa.array(sorted(keep)))


def drop_stopped(points: pa.Table) -> tuple[pa.Table, int]:
    """Leave out trials whose selected row has status ``stopped`` (ended early, e.g. by
    ASHA): their final values come from fewer steps than the others', so on a final-point
    fit they would read as a worse law rather than as less training. Returns the kept
    points and how many were left out."""
    if "status" not in points.column_names or points.num_rows == 0:
        return points, 0
    stopped = pc.fill_null(pc.equal(points["status"], "stopped"), False)
    n = int(pc.sum(stopped).as_py() or 0)
    return (points.filter(pc.invert(stopped)), n) if n else (points, 0)


def column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN for null, or a string column as objects."""
    col = table[name]
    if _is_numeric(col.type):
        return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy()
    return np.asarray(col.to_pylist(), dtype=object)


def groups(table: pa.Table, by) -> list[tuple[dict, np.ndarray]]:
    """(group values, row indices) for each combination of the ``by`` columns, sorted."""
    n = table.num_rows
    if not by:
        return [({}, np.arange(n))] if n else []
    key = _combine([codes(table[c]) for c in by], n)
    values = {c: table[c].to_pylist() for c in by}
    out = []
    for g in np.unique(key):
        idx = np.flatnonzero(key == g)
        out.append(({c: values[c][idx[0]] for c in by}, idx))
    out.sort(key=lambda item: tuple(str(v) for v in item[0].values()))
    return out
