"""The Optuna journal's copy in the result storage, so a study survives its head node.

Optuna appends to a local journal file (under its own file lock); an object store cannot
host that file. So the journal stays on the driver and a copy of it is written to
``<experiment directory>/optuna.journal`` (an ``s3://``/``gs://``/``hdfs://`` URI) at every
Tune experiment snapshot, the moment Ray also saves the searcher's state, and brought back
before the study is opened by a run or a ``--resume`` on a fresh driver. A journal only
grows, so the longer of the two files is the newer: a local file longer than the copy (the
same driver, written after the last snapshot) is kept. All I/O goes through ``pyarrow.fs``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs as pafs

log = logging.getLogger(__name__)


def _remote(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri)


def restore_journal(local: Path, uri: str | None) -> bool:
    """Copy the stored journal to ``local`` when it is longer than the local one (or the
    local one is missing). True when a copy was made."""
    if uri is None:
        return False
    filesystem, path = _remote(uri)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        return False
    have = local.stat().st_size if local.exists() else -1
    if info.size <= have:
        return False
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.restoring")
    with filesystem.open_input_stream(path) as source, open(tmp, "wb") as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)
    tmp.replace(local)
    log.info("Optuna journal restored from %s (%d bytes)", uri, info.size)
    return True


def upload_journal(local: Path, uri: str) -> int:
    """Write the local journal's bytes to ``uri`` (whole: an object appears once uploaded);
    returns the size written, 0 when there is no local journal yet."""
    if not local.exists():
        return 0
    data = local.read_bytes()
    filesystem, path = _remote(uri)
    with filesystem.open_output_stream(path) as out:
        out.write(data)
    return len(data)
