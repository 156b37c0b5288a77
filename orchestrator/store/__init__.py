"""The Parquet result store: written by a Tune callback, read with plain pyarrow.

Layout: ``<root>/experiment=<name>/part-*.parquet``. Only the reader and writer live
here; the Tune callback (``orchestrator.store.callback``) is imported by the sweep alone.
"""
from orchestrator.store.reader import deduplicate, final_rows, open_results, read_results
from orchestrator.store.schema import COLUMNS, SCHEMA, SCHEMA_VERSION
from orchestrator.store.writer import ResultWriter

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ResultWriter",
    "deduplicate",
    "final_rows",
    "open_results",
    "read_results",
]
