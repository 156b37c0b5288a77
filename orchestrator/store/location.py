"""Where a store lives: a local directory or any URI pyarrow's filesystems open.

``results.path`` may be a plain path, ``file://``, ``s3://``, ``gs://`` or ``hdfs://``: every
read, write, listing and delete of the store goes through the ``pyarrow.fs.FileSystem``
that :func:`pyarrow.fs.FileSystem.from_uri` gives for it, so credentials and endpoints come
from the standard environment exactly as pyarrow reads them (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...), and no other client
library is involved. Plain paths are made absolute, so a store's name in messages and
summaries is the same wherever the process's working directory is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from orchestrator.errors import UsageError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Filesystems whose rename replaces a file in one atomic step: a temporary file renamed into
# place is the way to publish a whole file there. Object stores (s3, gs) have no rename, but
# an object only appears once its upload completes, so a direct write is already whole.
RENAMING_SCHEMES = ("file", "hdfs", "viewfs")


def scheme(text: str | Path) -> str | None:
    """The URI scheme of ``text`` in lower case (None for a plain path)."""
    match = _SCHEME.match(str(text))
    return match.group(1).lower() if match else None


def is_uri(text: str | Path) -> bool:
    return scheme(text) is not None and scheme(text) != "file"


@dataclass(frozen=True)
class Location:
    """A store root: its filesystem, its path inside that filesystem, and its name for people."""

    filesystem: pafs.FileSystem
    path: str  # inside ``filesystem``: "/abs/dir" locally, "bucket/prefix" on S3
    uri: str  # an absolute path, or the URI as given (without a trailing slash)
    local: bool  # on this machine's filesystem (plain path or file://)
    renames: bool  # publish files by temporary name + rename (else by direct write)

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def name_of(self, path: str) -> str:
        """A filesystem path of this store as the user would write it (a local path or a URI)."""
        if self.local:
            return path
        prefix = self.uri[: len(self.uri) - len(self.path.rstrip("/"))] if self.uri.endswith(self.path.rstrip("/")) else None
        return f"{prefix}{path}" if prefix else f"{scheme(self.uri)}://{path}"

    def info(self, path: str | None = None) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path if path is None else path)

    def is_dir(self, path: str | None = None) -> bool:
        return self.info(path).type == pafs.FileType.Directory

    def exists(self, path: str | None = None) -> bool:
        return self.info(path).type != pafs.FileType.NotFound


def locate(root: str | Path) -> Location:
    """The :class:`Location` of a store root; a URI pyarrow cannot open is a UsageError."""
    text = str(root)
    kind = scheme(text)
    if kind is None:
        path = str(Path(text).expanduser().resolve())
        return Location(pafs.LocalFileSystem(), path, path, local=True, renames=True)
    try:
        filesystem, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UsageError(f"{text}: cannot open this URI with pyarrow.fs: {' '.join(str(exc).split())[:300]}") from None
    local = isinstance(filesystem, pafs.LocalFileSystem)
    uri = text.rstrip("/") if not local else path.rstrip("/") or "/"
    return Location(filesystem, path.rstrip("/") or path, uri, local=local, renames=local or kind in RENAMING_SCHEMES)


def display(root: str | Path) -> str:
    """``root`` as an absolute path or a URI, for summaries and messages (no I/O for URIs)."""
    return str(Path(root).expanduser().resolve()) if scheme(root) is None else str(root).rstrip("/")
