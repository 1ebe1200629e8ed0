"""One sweep driver per run directory: an exclusive ``flock`` on ``<run_dir>/driver.lock``.

Two drivers on one run directory would train the same trial ids into the same directories. The
lock is an OS lock on an open file descriptor that stays open for the life of the process, so the
kernel releases it however the process ends (exit, Ctrl-C, SIGKILL, a crash): there is never a
stale lock to clean up. The file holds the holder's pid, host and start time, for the message the
second driver gets. On Linux ``flock`` also works on NFS (emulated with byte-range locks).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from plumbing import storage
from plumbing.errors import UserError

LOCK_FILE = "driver.lock"  # in the run directory (sweep.layout lists it)
# resolved run dir -> the open fd holding its lock: never closed, and not inherited by the processes
# this one starts (Python opens fds close-on-exec), so the lock ends exactly with this process.
_HELD: dict[str, int] = {}
_CREATED: set[str] = set()  # run dirs this process made (release_unused removes them again)
_READ_TRIES = 20  # the holder writes its details just after locking: wait up to ~1 s for them


def hold_run_dir(run_dir: str | Path, create: bool = True) -> Path | None:
    """Lock ``run_dir`` for this process, or a UserError naming the holder.

    Returns the lock file; None for a URI, or for a missing directory with ``create=False`` (a
    resume of nothing, which the config check reports). Taking it again in the same process is a
    no-op (an flock on a second descriptor of the same file would conflict with our own).
    """
    if storage.is_uri(run_dir):  # object storage has no flock: a bucket run dir is not locked
        return None
    run_dir = Path(run_dir).expanduser().resolve()
    path = run_dir / LOCK_FILE
    if str(run_dir) in _HELD:
        return path
    if not create and not run_dir.is_dir():
        return None
    try:
        if not run_dir.is_dir():
            run_dir.mkdir(parents=True)
            _CREATED.add(str(run_dir))
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileExistsError:  # made at the same moment by another driver: the lock decides
        return hold_run_dir(run_dir, create)
    except OSError as e:
        raise UserError(f"out_dir {run_dir} cannot be written: {e.strerror or e}; give a writable directory") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise UserError(busy_message(run_dir, holder)) from None
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    _HELD[str(run_dir)] = fd
    return path


def release_unused(run_dir: str | Path) -> None:
    """Give back the lock of a run directory this process holds and nothing else has written to (a
    config the check refused): the directory is left as it was found (removed when this process made it)."""
    if storage.is_uri(run_dir):
        return
    run_dir = Path(run_dir).expanduser().resolve()
    fd = _HELD.pop(str(run_dir), None)
    if fd is None:
        return
    os.close(fd)
    if {p.name for p in run_dir.iterdir()} == {LOCK_FILE}:
        (run_dir / LOCK_FILE).unlink()
        if str(run_dir) in _CREATED:
            run_dir.rmdir()


def _read_holder(fd: int) -> dict:
    for _ in range(_READ_TRIES):
        try:
            holder = json.loads(os.pread(fd, 65536, 0).decode())
            if isinstance(holder, dict):
                return holder
        except ValueError:  # empty or half written: the holder has just taken the lock
            pass
        time.sleep(0.05)
    return {}


def busy_message(run_dir: Path, holder: dict) -> str:
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    since = f" since {holder['started']}" if holder.get("started") else ""
    return (f"{run_dir} is in use by another sweep driver (pid {pid} on host {host}{since}; "
            f"{run_dir / LOCK_FILE}). One driver per run directory: wait for it to finish, stop it "
            f"(kill -TERM {pid} on {host} saves its state; continue later with resume={run_dir}), or give a "
            "new out_dir. The lock dies with its process: if that process is gone, the directory is already free")
