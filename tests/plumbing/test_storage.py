"""plumbing.storage on a local directory and on a real S3-compatible server (moto on 127.0.0.1)."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from ray_helpers import free_ports
from s3_server import s3_server  # noqa: F401  (the fixture)

from plumbing import storage
from plumbing.errors import UserError

# Measured here: a refused port fails in about 1.5 s, a server that accepts and never answers in about 14 s.
FAIL_FAST_S = 20


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path) -> str:
    """An empty directory that does not exist yet: under tmp_path, or under the test bucket."""
    root = str(tmp_path) if request.param == "local" else request.getfixturevalue("s3_server").uri
    return storage.join(root, uuid.uuid4().hex[:8])


@pytest.fixture
def dead_endpoint(monkeypatch):
    """AWS_* pointing at a port where nothing listens (connection refused)."""
    (port,) = free_ports(1)
    _aws_env(monkeypatch, f"http://127.0.0.1:{port}")
    return port


def _aws_env(monkeypatch, endpoint: str) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize("path, expected", [
    ("s3://bucket/prefix", True), ("gs://b", True), ("file:///tmp/x", True), ("/tmp/x", False),
    ("runs/sweep", False), ("./s3://x", False), ("c:/x", False),
])
def test_is_uri(path, expected):
    assert storage.is_uri(path) is expected


@pytest.mark.parametrize("base_path, parts, expected", [
    ("s3://b/p", ("exp", "trial"), "s3://b/p/exp/trial"),
    ("s3://b/p/", ("/exp/", "f.json"), "s3://b/p/exp/f.json"),
    ("s3://b", ("x",), "s3://b/x"),
    ("/tmp/run", ("exp", "f.json"), "/tmp/run/exp/f.json"),
    ("runs", ("sweep",), "runs/sweep"),
])
def test_join(base_path, parts, expected):
    assert storage.join(base_path, *parts) == expected


def test_resolve_local_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path = storage.resolve("runs/sweep")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == (tmp_path / "runs" / "sweep").as_posix()


def test_resolve_s3_gives_bucket_path_and_bounded_client(s3_server):  # noqa: F811
    fs, path = storage.resolve(s3_server.uri + "/exp/")
    assert isinstance(fs, pafs.S3FileSystem)
    assert path == f"{s3_server.bucket}/runs/exp"
    options = fs.__reduce__()[1][0]  # what Ray's workers get when it pickles the filesystem
    assert options["endpoint_override"] == s3_server.endpoint
    assert options["connect_timeout"] == storage.CONNECT_TIMEOUT_S
    assert options["request_timeout"] == storage.REQUEST_TIMEOUT_S


@pytest.mark.parametrize("uri", ["s3://b/p?endpoint_override=127.0.0.1:9000", "s3:///p"])
def test_resolve_rejects_uris_it_cannot_use(uri):
    with pytest.raises(UserError, match="s3://"):
        storage.resolve(uri)


# ---------------------------------------------------------------- files, on both kinds of storage


def test_text_and_bytes_round_trip(base):
    target = storage.join(base, "a", "b", "summary.json")
    assert not storage.exists(target)
    storage.write_text(target, '{"f1": 0.5, "name": "é"}')  # parents are created
    assert storage.exists(target)
    assert storage.exists(storage.join(base, "a"))
    assert storage.read_text(target) == '{"f1": 0.5, "name": "é"}'
    storage.write_bytes(target, b"\x00\x01")
    assert storage.read_bytes(target) == b"\x00\x01"
    assert storage.list_dir(storage.join(base, "a", "b")) == ["summary.json"]  # no temp file left


def test_append_text_adds_lines_to_a_new_or_existing_file(base):
    target = storage.join(base, "c", "stops.jsonl")
    storage.append_text(target, '{"epoch": 3}\n')  # created with its parents
    storage.append_text(target, '{"epoch": 6}\n')
    assert storage.read_text(target).splitlines() == ['{"epoch": 3}', '{"epoch": 6}']
    assert storage.list_dir(storage.join(base, "c")) == ["stops.jsonl"]


def test_missing_file_is_file_not_found(base):
    with pytest.raises(FileNotFoundError):
        storage.read_text(storage.join(base, "nope.json"))
    with pytest.raises(FileNotFoundError):
        storage.list_dir(storage.join(base, "nope"))


def test_list_and_delete_dir(base):
    storage.write_text(storage.join(base, "x.txt"), "1")
    storage.write_text(storage.join(base, "trial_1", "result.json"), "{}")
    assert storage.list_dir(base) == ["trial_1", "x.txt"]
    storage.delete_dir(storage.join(base, "trial_1"))
    assert not storage.exists(storage.join(base, "trial_1", "result.json"))
    assert storage.list_dir(base) == ["x.txt"]
    storage.delete_dir(storage.join(base, "trial_1"))  # already gone: fine by default
    with pytest.raises(FileNotFoundError):
        storage.delete_dir(storage.join(base, "trial_1"), missing_ok=False)


def test_upload_and_download_dir(base, tmp_path):
    src = tmp_path / "checkpoint"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"w" * 100_000)
    (src / "sub" / "meta.json").write_text('{"step": 3}')
    dest = storage.join(base, "best_checkpoint")
    storage.upload_dir(src, dest)
    assert storage.list_dir(dest) == ["model.bin", "sub"]
    assert storage.read_text(storage.join(dest, "sub", "meta.json")) == '{"step": 3}'

    back = tmp_path / "back"
    storage.download_dir(dest, back)
    assert (back / "model.bin").read_bytes() == b"w" * 100_000
    assert (back / "sub" / "meta.json").read_text() == '{"step": 3}'
    flat = storage.join(base, "flat")  # files only: nothing makes the local directory but download_dir
    storage.write_text(storage.join(flat, "a.txt"), "a")
    storage.download_dir(flat, tmp_path / "new" / "flat")
    assert (tmp_path / "new" / "flat" / "a.txt").read_text() == "a"
    storage.replace_dir(tmp_path / "new" / "flat", dest)  # dest's earlier files go
    assert storage.list_dir(dest) == ["a.txt"]
    with pytest.raises(FileNotFoundError):
        storage.download_dir(storage.join(base, "nope"), tmp_path / "none")
    with pytest.raises(FileNotFoundError):
        storage.upload_dir(tmp_path / "nope", dest)


def test_s3_files_are_what_pyarrow_from_uri_sees(s3_server):  # noqa: F811
    """Ray resolves ``storage_path`` with ``FileSystem.from_uri`` and the same environment."""
    target = storage.join(s3_server.uri, "seen", "f.txt")
    storage.write_text(target, "hello")
    fs, path = pafs.FileSystem.from_uri(target)
    with fs.open_input_stream(path) as f:
        assert f.read() == b"hello"


def test_local_errors_stay_ordinary(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        storage.list_dir(tmp_path / "file")
    assert not storage.exists(tmp_path / "not-yet")  # a local directory is created when written


# ---------------------------------------------------------------- storage that cannot be used


def test_missing_bucket_names_the_bucket(s3_server):  # noqa: F811
    uri = "s3://no-such-bucket-here/runs/sweep"
    with pytest.raises(UserError, match="bucket 'no-such-bucket-here' does not exist") as info:
        storage.exists(uri)
    assert uri in str(info.value)
    assert s3_server.endpoint in str(info.value)
    for call in (lambda: storage.exists(uri), lambda: storage.read_text(storage.join(uri, "f")),
                 lambda: storage.write_text(storage.join(uri, "f"), "x"), lambda: storage.list_dir(uri),
                 lambda: storage.upload_dir(Path(__file__).parent, uri),
                 lambda: storage.download_dir(uri, Path(__file__).parent / "never")):
        with pytest.raises(UserError, match="no-such-bucket-here"):
            call()


def test_unreachable_endpoint_fails_fast(dead_endpoint):
    uri = "s3://bucket/runs/sweep"
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        storage.exists(uri)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert uri in message and f"127.0.0.1:{dead_endpoint}" in message
    assert "cannot reach" in message and "AWS_ENDPOINT_URL" in message
    assert elapsed < FAIL_FAST_S, elapsed
    with pytest.raises(UserError, match="cannot reach"):
        storage.write_text(storage.join(uri, "f.json"), "{}")


@pytest.mark.slow
def test_silent_endpoint_fails_within_bound(monkeypatch):
    """A server that accepts connections and never answers: pyarrow's defaults waited 99 s here."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nobody reads
        _aws_env(monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(UserError, match="cannot reach"):
            storage.exists("s3://bucket/runs")
        elapsed = time.monotonic() - start
    assert elapsed < FAIL_FAST_S, elapsed
