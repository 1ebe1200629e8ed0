"""A real S3-compatible server on 127.0.0.1 for tests: moto's standalone server, one per test module.

Import the fixture into a test module (``from s3_server import s3_server  # noqa: F401``). It sets the
variables that pyarrow and Ray read (AWS_ENDPOINT_URL, credentials, region) for the module's tests
and restores them after; a module that starts Ray must request ``s3_server`` before ``ray.init``,
since Ray's worker processes inherit the environment they were started with.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray_helpers import free_ports

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT, as AWS_ENDPOINT_URL holds it
    bucket: str
    uri: str  # s3://bucket/prefix: an empty run directory in a fresh bucket
    pid: int


def start_moto(port: int, log: Path) -> subprocess.Popen:
    """``python -m moto.server`` on 127.0.0.1:port, answering HTTP when this returns."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"moto server did not answer on port {port} within {START_TIMEOUT_S} s: "
                       f"{log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """End exactly this process: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """A moto S3 server with a fresh bucket, and the AWS_* environment pointing at it."""
    pytest.importorskip("moto.server", reason="moto is not installed: pip install 'moto[server]' (the dev extra)")
    import pyarrow.fs as pafs

    (port,) = free_ports(1)
    proc = start_moto(port, tmp_path_factory.mktemp("moto") / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    bucket = f"test-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)  # it would win over AWS_ENDPOINT_URL
            mp.delenv("AWS_PROFILE", raising=False)
            mp.delenv("AWS_SESSION_TOKEN", raising=False)
            for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                                "AWS_DEFAULT_REGION": "us-east-1"}.items():
                mp.setenv(name, value)
            pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir(bucket)
            yield S3Server(endpoint=endpoint, bucket=bucket, uri=f"s3://{bucket}/runs", pid=proc.pid)
    finally:
        stop(proc)
