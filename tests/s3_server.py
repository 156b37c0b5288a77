"""A real S3 endpoint on loopback for tests: moto's standalone server in a subprocess.

``s3_server`` starts ``python -m moto.server`` on 127.0.0.1 on a free port, waits until it
answers, points the standard AWS environment (``AWS_ENDPOINT_URL`` and credentials) at it,
creates the bucket ``bucket`` through pyarrow, and stops the server afterwards. pyarrow
(and Ray, which uses pyarrow's filesystems) reads those variables like any AWS client, so
``s3://bucket/...`` URIs reach the server with no code aware of the test.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import pytest

BUCKET = "bucket"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str

    def filesystem(self):
        """A pyarrow S3FileSystem on this server, configured by hand (as a plain reader would)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=self.endpoint, access_key="testing", secret_key="testing",
                                 region="us-east-1", scheme="http", allow_bucket_creation=True)

    def uri(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, *parts])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_environment(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    }


def start_server(port: int) -> subprocess.Popen:
    """moto's server, answering on ``port`` within 60 s (else the test fails, naming why)."""
    # The server logs every request: to a file, never a pipe nobody drains (a full pipe
    # would block the server mid-request once 64 KiB of log lines have piled up).
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )
    proc.log = log
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"moto server exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"moto server did not answer on 127.0.0.1:{port} within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    getattr(proc, "log", None) and proc.log.close()


@pytest.fixture
def s3_server(monkeypatch):
    pytest.importorskip("moto", reason='needs moto[server] (pip install "moto[server]"; in the dev extra)')
    port = free_port()
    proc = start_server(port)
    try:
        server = S3Server(f"http://127.0.0.1:{port}", BUCKET)
        for key, value in server_environment(server.endpoint).items():
            monkeypatch.setenv(key, value)
        server.filesystem().create_dir(BUCKET)
        yield server
    finally:
        stop_server(proc)
