"""How a command reaches Ray: a cluster named by RAY_ADDRESS, within a bound, or a local Ray of its own.

``ray.init`` against an address where no Ray answers retries for more than 10 minutes, so the address
is probed first and the whole connection is bounded; a local Ray gets its own State API address, so
that Ray code asking "the" Ray of the machine asks this one. Below ``sweep.verbose=2`` Ray's own
output stays in its session logs (``quiet_ray``).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from plumbing.errors import UserError

# Faster result delivery (measured on Ray 2.60: a result 0.5 s after its report instead of about 2 s), one
# actor less per trial, and the Train runs' state (workers, nodes, GPU ids, attempts) in the dashboard's Train view.
RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",
}
# ray.init against an address where no Ray answers retries for more than 10 minutes, so the address is
# probed first (a dead head fails in PROBE_S) and the whole connection is bounded (CONNECT_TIMEOUT_S):
# something listening there that is not a Ray GCS (e.g. the dashboard port) hangs ray.init just the same.
PROBE_S = 5.0
CONNECT_TIMEOUT_S = 40.0
RAY_CLIENT_PORT = 10001  # ray://host without a port


def set_ray_env() -> None:
    """The knobs above, unless the user set them; processes Ray starts from here inherit them."""
    for key, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def connect() -> str:
    """Join the cluster named by RAY_ADDRESS, else start a local Ray (dashboard on), also when a cluster
    started with ``ray start`` runs on this machine (``ray.init()`` would join that one; RAY_ADDRESS=auto
    asks for it).

    A RAY_ADDRESS where no Ray answers is a UserError within about a minute, never a hang.
    """
    import ray

    set_ray_env()
    address = os.environ.get("RAY_ADDRESS", "").strip() or None
    if not ray.is_initialized():
        if address in (None, "local"):  # "local": Ray itself would join a `ray start` cluster found here
            try:
                ray.init(address="local", logging_level="WARNING", dashboard_port=pin_state_api())
            except Exception as e:  # noqa: BLE001 - whatever stops a local Ray, the user's fix is the same
                raise UserError(local_ray_failed(e)) from None
        else:
            endpoint = ray_endpoint(address)
            if endpoint:
                probe(address, *endpoint)
            with give_up_after(CONNECT_TIMEOUT_S, address, endpoint[1] if endpoint else "PORT"):
                try:
                    ray.init(address=address, logging_level="WARNING")
                except ConnectionError as e:
                    raise UserError(unreachable(address, str(e).splitlines()[0])) from None
    return address or "local"


def local_ray_failed(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return (f"the local Ray did not start: {first}. The machine may be short of memory, CPU or disk at the "
            f"moment (Ray's logs: {os.environ.get('RAY_TMPDIR', '/tmp')}/ray/session_latest/logs): try again, "
            "or start Ray yourself (ray start --head) and run the sweep with RAY_ADDRESS=auto")


def pin_state_api() -> int:
    """A free port for a local Ray's dashboard, named in RAY_API_SERVER_ADDRESS for every process the
    Ray starts (they inherit this environment).

    Ray code in workers that asks the State API without an address (Ray Train's placement-group
    cleaner, which frees the placement group of a trial ASHA stopped) looks for "the" Ray on the
    machine; with a second one running (another sweep, a notebook's ray.init) it fails with "Found
    multiple active Ray instances", the stopped trial's placement group is never freed and the next
    trial waits for it forever. Named, it asks this sweep's own Ray.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["RAY_API_SERVER_ADDRESS"] = state_api_url(port)
    return port


def state_api_url(dashboard_port: int) -> str:
    """RAY_API_SERVER_ADDRESS of a local Ray whose dashboard listens on this port."""
    return f"http://127.0.0.1:{dashboard_port}"


def ray_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that ``ray.init(address)`` opens: the GCS of ``host:port``, the Ray Client server
    of ``ray://host[:port]``, the running local cluster for ``auto``; None when it cannot be told."""
    if address.startswith(("http://", "https://")):
        raise UserError(f"RAY_ADDRESS={address} is an HTTP address (the dashboard / Jobs API, port 8265): "
                        "it is for submitting, `ray job submit --working-dir . -- python -m sweep.run ...`. "
                        "To run sweep.run as a driver against the cluster, set RAY_ADDRESS to its GCS "
                        "address (head_ip:6379) or unset it to run on a local Ray")
    if address == "auto":  # Ray's own lookup of the latest `ray start` here; ray.init says when none runs
        return None
    default_port = RAY_CLIENT_PORT if address.startswith("ray://") else None
    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
        host, port = parts.hostname, parts.port or default_port
    except ValueError as e:
        raise UserError(f"RAY_ADDRESS={address} is not an address ({e}); write host:port (the head's GCS, "
                        "port 6379 by default) or ray://host:10001") from None
    if not host or port is None:
        raise UserError(f"RAY_ADDRESS={address} names no host:port; write host:port (the head's GCS, port 6379 "
                        "by default) or ray://host:10001, or unset RAY_ADDRESS to run on a local Ray")
    return host, port


def probe(address: str, host: str, port: int, budget_s: float = PROBE_S) -> None:
    """A TCP connection to (host, port) within ``budget_s`` (retried: a head may be starting), or a UserError."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.5, min(5.0, deadline - time.monotonic()))):
                return
        except socket.gaierror as e:
            raise UserError(unreachable(address, f"cannot resolve {host!r}: {e.strerror or e}", port)) from None
        except OSError as e:
            why = e.strerror or str(e) or type(e).__name__
        if time.monotonic() >= deadline:
            raise UserError(unreachable(address, f"{host}:{port}: {why}, for {budget_s:g} s", port))
        time.sleep(0.5)


def unreachable(address: str, why: str, port: int | str = "PORT") -> str:
    return (f"cannot reach a Ray cluster at RAY_ADDRESS={address} ({why}). Start a head there "
            f"(ray start --head --port={port} on that machine), or bring up the cluster of cluster.yaml "
            "(ray up cluster.yaml) and submit to it through the dashboard (ray dashboard cluster.yaml "
            "forwards port 8265; then RAY_ADDRESS=http://localhost:8265 ray job submit --working-dir . -- "
            "python -m sweep.run ...); or unset RAY_ADDRESS to run on a local Ray started by this command")


@contextmanager
def give_up_after(seconds: float, address: str, port: int | str = "PORT") -> Iterator[None]:
    """Exit 2 with the message of ``unreachable`` if the block takes longer than ``seconds``.

    ray.init waits inside Ray's C++ GCS client, where no Python exception can reach it, so the
    watchdog ends the process (the run-dir lock is released by the kernel with it).
    """
    def expire() -> None:
        why = (f"something listens there but no Ray answered within {seconds:g} s; is it the GCS port "
               "(6379 by default), and the same Ray version?")
        print(f"error: {unreachable(address, why, port)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def quiet_ray() -> None:
    """Ray's own output into its session logs (/tmp/ray/session_*/logs), not this process's console.

    Environment knobs Ray reads when it is imported and initialized, so this runs before ``connect``:
    the workers' and raylets' lines are not forwarded to this process (``log_to_driver``), Ray's
    notices to every driver (RAY_NOTICES) are left out of stdout and a piped stdout gets no colour
    codes; a local Ray gets token authentication by asking for it, as Ray does by default, minus the
    warning it prints then (a remote cluster's mode is the user's to set). Tune's warning that it
    saved its experiment state often goes too: an in-process trial's checkpoint makes Tune save it at
    once (num_to_keep=1), which is what a resume after kill -9 starts from.
    """
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_LOG_TO_DRIVER", "0")
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # a piped log gets "(raylet)", not escape codes
    if not isinstance(sys.stdout, WithoutRayNotices):
        sys.stdout = WithoutRayNotices(sys.stdout)
    if os.environ.get("RAY_ADDRESS", "").strip() in ("", "local"):
        os.environ.setdefault("RAY_AUTH_MODE", "token")


# What the raylet says to every driver when a node has started 4x its CPUs in worker processes: in a
# sweep that is every trial's actor, Train controller and workers, as planned, not a problem to act on.
RAY_NOTICES = ("worker processes have been started on node",)


class WithoutRayNotices:
    """This process's stdout less Ray's notices (RAY_NOTICES), which Ray prints to every driver whatever
    ``log_to_driver`` says; every other line, Ray's errors and warnings included, passes through."""

    def __init__(self, stream):
        self.stream, self.dropped = stream, False

    def write(self, text: str) -> int:
        if any(n in text for n in RAY_NOTICES):
            self.dropped = True  # print() writes the line, then its end on its own
            return len(text)
        if self.dropped and text == "\n":
            self.dropped = False
            return len(text)
        self.dropped = False
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)
