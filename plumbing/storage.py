"""Run directories that are a local path or an object-storage URI (``s3://bucket/prefix``), one API.

A sweep on a cluster writes where every node can read, as Ray Tune does with
``RunConfig(storage_path="s3://...")``; the rest of the code should not care which it got. Everything
goes through ``pyarrow.fs``, the layer Ray itself uses, so both see the same files with the same
settings. Local paths stay plain files (``write_text`` is still atomic there).

S3 settings come from the environment, as for Ray and the AWS tools:
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (with its scheme: ``http://host:9000`` for MinIO or
a local test server; unset means AWS itself), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or a
profile or instance role) and ``AWS_REGION`` / ``AWS_DEFAULT_REGION``. Failures of the storage
(endpoint unreachable, missing bucket, refused credentials) raise ``UserError`` naming the URI and
those variables, within about 20 s rather than the minutes of pyarrow's defaults.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from plumbing.errors import UserError

ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # pyarrow's order: the S3-specific one wins
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
# pyarrow's defaults retried a server that accepts connections but never answers for 99 s (measured).
# request_timeout is curl's low-speed limit (no byte for that long), not a cap on a large upload.
CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 4.0
MAX_ATTEMPTS = 3

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_NETWORK = ("NETWORK_CONNECTION", "curlCode", "Could not resolve", "Timeout was reached")
_NO_BUCKET = ("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist")
_DENIED = ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
           "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH")

PathLike = str | os.PathLike


def is_uri(path: PathLike) -> bool:
    """``scheme://...`` (s3://, gs://, file://); a plain or relative path is not one."""
    return bool(_URI.match(str(path)))


def resolve(path: PathLike) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it, as Ray's ``storage_filesystem`` / ``storage_path`` take them.

    Local paths become absolute. ``s3://`` gets this module's timeouts and retries (pyarrow's own
    ``from_uri`` reads the same endpoint variables but waits minutes on a dead server); other schemes
    go to ``pyarrow.fs.FileSystem.from_uri`` as they are.
    """
    if not is_uri(path):
        return pafs.LocalFileSystem(), Path(path).expanduser().absolute().as_posix()
    text = str(path)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise UserError(f"{text}: options in the URI are not supported here; set them in the environment "
                        f"({', '.join(ENDPOINT_VARS + REGION_VARS)})")
    if parts.scheme != "s3":
        with _storage_errors(text):
            return pafs.FileSystem.from_uri(text)
    if not parts.netloc:
        raise UserError(f"{text}: no bucket; write s3://bucket/prefix")
    fs = s3_filesystem(_env(ENDPOINT_VARS), _env(REGION_VARS), parts.netloc)
    return fs, posixpath.join(parts.netloc, parts.path.strip("/")).rstrip("/")


def s3_filesystem(endpoint: str | None, region: str | None, bucket: str) -> pafs.S3FileSystem:
    """An S3 filesystem with bounded waits (built per call: 20 ms, and it sees changed credentials).

    The timeouts survive pickling (Ray ships the filesystem to its workers), the retry strategy does
    not (workers get pyarrow's default, the same 3 attempts). Without an endpoint or a region, the
    bucket's region is looked up, as ``from_uri`` does, so AWS does not answer with redirects.
    """
    if endpoint is None and region is None:
        region = _bucket_region(bucket)
    return pafs.S3FileSystem(
        endpoint_override=endpoint, region=region, connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS))


@functools.lru_cache(maxsize=32)
def _bucket_region(bucket: str) -> str:
    with _storage_errors(f"s3://{bucket}"):
        return pafs.resolve_s3_region(bucket)


def join(base: PathLike, *parts: str) -> str:
    """``base/part/...`` for a local path or a URI (``os.path.join`` would not keep ``s3://``'s slashes)."""
    if not is_uri(base):
        return str(Path(base, *parts))
    return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))])


def absolute(path: PathLike) -> str:
    """A URI as given (without a trailing slash), a local path made absolute: Ray's workers run in
    other working directories, and pyarrow reads a relative path as a URI with no scheme."""
    return str(path).rstrip("/") if is_uri(path) else str(Path(path).expanduser().resolve())


def for_ray(path: PathLike) -> tuple[str, pafs.FileSystem | None]:
    """``(path, storage_filesystem)`` for Ray Tune/Train's storage arguments: a URI goes as a path in
    this module's filesystem, with its bounded timeouts (Ray's own from_uri waits ~100 s on a silent
    endpoint); a local path as itself, with None (Ray's default local handling)."""
    if not is_uri(path):
        return absolute(path), None
    fs, fs_path = resolve(path)
    return fs_path, fs


def exists(path: PathLike) -> bool:
    """A file or directory (on S3: an object, or a prefix with objects under it) is there."""
    fs, fs_path = resolve(path)
    with _storage_errors(path, fs, fs_path):
        info = fs.get_file_info(fs_path)
        if info.type == pafs.FileType.NotFound and isinstance(fs, pafs.S3FileSystem):
            _require_bucket(fs, fs_path, str(path))  # S3 says "not found" for a key in a missing bucket
        return info.type != pafs.FileType.NotFound


def read_bytes(path: PathLike) -> bytes:
    """The whole file; FileNotFoundError when it is missing, as for a local file."""
    fs, fs_path = resolve(path)
    with _storage_errors(path, fs, fs_path), fs.open_input_stream(fs_path) as f:
        return f.read()


def read_text(path: PathLike) -> str:
    """The file as UTF-8 text."""
    return read_bytes(path).decode("utf-8")


def write_bytes(path: PathLike, data: bytes) -> None:
    """Replace the file whole, creating parent directories: readers see the old or the new one.

    Locally through a temporary sibling and a rename; an S3 object only appears when its upload
    completes, so it is written in place.
    """
    fs, fs_path = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        target = Path(fs_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return
    with _storage_errors(path, fs, fs_path), fs.open_output_stream(fs_path) as f:
        f.write(data)


def write_text(path: PathLike, text: str) -> None:
    """``write_bytes`` of the UTF-8 text."""
    write_bytes(path, text.encode("utf-8"))


def append_text(path: PathLike, text: str) -> None:
    """Add ``text`` at the end of the file (created with its parents when missing). A local file is
    appended to in place, so N appends cost N lines, not N files; an object store cannot append, so
    there the object is rewritten whole."""
    fs, fs_path = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        Path(fs_path).parent.mkdir(parents=True, exist_ok=True)
        with open(fs_path, "a", encoding="utf-8") as f:
            f.write(text)
        return
    write_text(path, (read_text(path) if exists(path) else "") + text)


def list_dir(path: PathLike) -> list[str]:
    """Sorted names directly under the directory; FileNotFoundError when there is none."""
    fs, fs_path = resolve(path)
    with _storage_errors(path, fs, fs_path):
        infos = fs.get_file_info(pafs.FileSelector(fs_path))
    return sorted(posixpath.basename(info.path.rstrip("/")) for info in infos)


def delete_dir(path: PathLike, missing_ok: bool = True) -> None:
    """Remove the directory and everything under it."""
    fs, fs_path = resolve(path)
    try:
        with _storage_errors(path, fs, fs_path):
            fs.delete_dir(fs_path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def delete_file(path: PathLike, missing_ok: bool = True) -> None:
    """Remove one file (object)."""
    fs, fs_path = resolve(path)
    try:
        with _storage_errors(path, fs, fs_path):
            fs.delete_file(fs_path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def upload_dir(local_dir: PathLike, dest: PathLike) -> None:
    """Copy a local directory's tree into ``dest`` (files land at ``dest/<relative path>``)."""
    src = Path(local_dir).absolute()
    if not src.is_dir():
        raise FileNotFoundError(f"{local_dir}: no such directory")
    fs, fs_path = resolve(dest)
    with _storage_errors(dest, fs, fs_path):
        _copy_tree(pafs.LocalFileSystem(), src.as_posix(), fs, fs_path)


def download_dir(src: PathLike, local_dir: PathLike) -> None:
    """Copy the tree under ``src`` into a local directory (created as needed)."""
    fs, fs_path = resolve(src)
    with _storage_errors(src, fs, fs_path):
        if fs.get_file_info(fs_path).type != pafs.FileType.Directory:
            raise FileNotFoundError(f"{src}: no such directory")
        Path(local_dir).mkdir(parents=True, exist_ok=True)  # copy_files makes only the subdirectories
        _copy_tree(fs, fs_path, pafs.LocalFileSystem(), Path(local_dir).absolute().as_posix())


def replace_dir(local_dir: PathLike, dest: PathLike) -> None:
    """Make ``dest`` a copy of a local directory, nothing else left in it. Locally the copy is
    swapped in with a rename (a reader never sees half of it); on S3, where a prefix cannot be
    renamed, the old objects are deleted and the new ones uploaded."""
    fs, fs_path = resolve(dest)
    if not isinstance(fs, pafs.LocalFileSystem):
        delete_dir(dest)
        upload_dir(local_dir, dest)
        return
    target = Path(fs_path)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    shutil.copytree(local_dir, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _copy_tree(src_fs: pafs.FileSystem, src: str, dst_fs: pafs.FileSystem, dst: str) -> None:
    # Threaded uploads to S3 can fail (apache/arrow#32372); Ray turns them off for the same reason.
    pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs,
                    use_threads=not isinstance(dst_fs, pafs.S3FileSystem), chunk_size=8 * 1024 * 1024)


def _env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _require_bucket(fs: pafs.S3FileSystem, fs_path: str, uri: str) -> None:
    bucket = fs_path.split("/", 1)[0]
    if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise UserError(f"{uri}: bucket '{bucket}' does not exist at {_where()}; create it "
                        f"(`aws s3 mb s3://{bucket}`) or fix the URI or {ENDPOINT_VARS[1]}")


@contextmanager
def _storage_errors(uri: PathLike, fs: pafs.FileSystem | None = None, fs_path: str = "") -> Iterator[None]:
    """Turn the storage's OSErrors into UserErrors that name the URI and what to set.

    A FileNotFoundError stays one (callers treat it as for local files) unless the bucket itself is
    missing. Local paths keep their ordinary errors.
    """
    try:
        yield
    except UserError:
        raise
    except FileNotFoundError:
        if isinstance(fs, pafs.S3FileSystem):
            with _storage_errors(uri):
                _require_bucket(fs, fs_path, str(uri))
        raise
    except OSError as e:
        if not is_uri(uri):
            raise
        raise UserError(_explain(str(uri), str(e))) from e


def _explain(uri: str, detail: str) -> str:
    creds = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    if any(s in detail for s in _NETWORK):
        fix = (f"check that the server is up, or set {ENDPOINT_VARS[1]} (or {ENDPOINT_VARS[0]}) to its "
               "URL with the scheme, e.g. http://host:9000")
        return f"{uri}: cannot reach the object storage at {_where()} ({detail}); {fix}"
    if any(s in detail for s in _NO_BUCKET) or "not found. To create buckets" in detail:
        return f"{uri}: the bucket does not exist at {_where()} ({detail}); create it or fix the URI"
    if any(s in detail for s in _DENIED):
        return f"{uri}: the object storage at {_where()} refused access ({detail}); check {creds}"
    return f"{uri}: {detail} (storage at {_where()}; settings: {ENDPOINT_VARS[1]}, {creds}, AWS_REGION)"


def _where() -> str:
    endpoint = _env(ENDPOINT_VARS)
    return f"{endpoint} (from AWS_ENDPOINT_URL*)" if endpoint else "AWS (AWS_ENDPOINT_URL not set)"
