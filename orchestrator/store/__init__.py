"""The Parquet result store: written by a Tune callback, read with plain pyarrow.

Layout: ``<root>/experiment=<name>/part-*.parquet``, one row per (experiment, trial, step);
``<root>`` is a directory or any ``pyarrow.fs`` URI (``s3://``, ``gs://``, ``hdfs://``,
``file://``). Writing: :class:`ResultWriter` (files appear whole); :func:`finalize_experiment`
compacts an experiment when a run ends. Reading:
:func:`open_results` (a pyarrow dataset), :func:`read_results` (deduplicated rows),
:func:`latest_rows` / :func:`completed_results`; ``orchestrator.store.query`` and
``orchestrator.store.compact`` back ``lorasweep query`` and ``lorasweep compact``. The Tune
callback (``orchestrator.store.callback``) imports Ray and is imported by the sweep alone.
"""
from orchestrator.store.compact import finalize_experiment
from orchestrator.store.latest import deduplicate, latest_rows
from orchestrator.store.reader import completed_results, final_rows, open_results, open_store, read_results
from orchestrator.store.schema import COLUMNS, SCHEMA, SCHEMA_VERSION, STATUSES
from orchestrator.store.writer import ResultWriter

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATUSES",
    "ResultWriter",
    "completed_results",
    "deduplicate",
    "final_rows",
    "finalize_experiment",
    "finalize_experiment",
    "latest_rows",
    "open_results",
    "open_store",
    "read_results",
]
