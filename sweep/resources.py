"""Ray connection and trial resources: how many worker groups the cluster holds, at once.

Tune starts a driver per trial whether or not its workers can be placed; a worker group that
cannot be placed waits, times out and retries forever. So concurrency is derived from what the
nodes actually have, and a request no node can satisfy fails before the sweep starts. A node lost
mid-sweep can leave the rest unable to hold a trial's worker group; Ray Train would wait for it
forever (each wait times out after RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S and starts again), so the
trial's driver watches the alive nodes (``PlacementWatch``) and errors after
``sweep.unplaceable_timeout_s``, naming what the trial needs and what the cluster has.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from omegaconf import DictConfig

from plumbing.errors import ConfigError, UserError

# Faster result delivery (measured on Ray 2.60: a result 0.5 s after its report instead of about 2 s), one
# actor less per trial, and the Train runs' state (workers, nodes, GPU ids, attempts) in the dashboard's Train view.
RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",
}
EPS = 1e-9
# ray.init against an address where no Ray answers retries for more than 10 minutes, so the address is
# probed first (a dead head fails in PROBE_S) and the whole connection is bounded (CONNECT_TIMEOUT_S):
# something listening there that is not a Ray GCS (e.g. the dashboard port) hangs ray.init just the same.
PROBE_S = 5.0
CONNECT_TIMEOUT_S = 40.0
RAY_CLIENT_PORT = 10001  # ray://host without a port


@dataclass(frozen=True)
class Node:
    node_id: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class TrialResources:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrialResources:
        s = cfg.sweep
        return cls(int(s.workers_per_trial), float(s.cpus_per_worker), float(s.gpus_per_worker))

    def per_worker(self) -> dict[str, float]:
        out = {"CPU": self.cpus_per_worker}
        if self.gpus_per_worker > 0:
            out["GPU"] = self.gpus_per_worker
        return out

    def describe(self) -> str:
        gpu = f" + {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        return f"{self.workers} worker(s) x ({self.cpus_per_worker:g} CPU{gpu})"


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


def alive_nodes() -> list[Node]:
    import ray

    nodes = []
    for n in ray.nodes():
        if n.get("Alive"):
            res = n.get("Resources", {})
            nodes.append(Node(n["NodeID"], float(res.get("CPU", 0)), float(res.get("GPU", 0))))
    return nodes


def workers_on(node: Node, req: TrialResources) -> int:
    """How many workers of this shape one node holds."""
    fits = math.floor(node.cpus / req.cpus_per_worker + EPS)
    if req.gpus_per_worker > 0:
        fits = min(fits, math.floor(node.gpus / req.gpus_per_worker + EPS))
    return max(fits, 0)


def describe_cluster(nodes: Sequence[Node]) -> str:
    parts = [f"{n.cpus:g} CPU/{n.gpus:g} GPU" for n in nodes]
    return f"{len(nodes)} node(s): " + ", ".join(parts) if nodes else "no alive nodes"


def plan_concurrency(nodes: Sequence[Node], req: TrialResources, num_samples: int,
                     max_concurrent: int | None = None) -> int:
    """Trials that can run at once; a request the cluster can never satisfy is a ConfigError.

    An explicit ``max_concurrent`` is trusted (an autoscaling cluster may not have its GPU nodes
    yet) and only capped by the number of trials.
    """
    if max_concurrent is not None:
        return max(1, min(max_concurrent, num_samples))
    have = describe_cluster(nodes)
    if not any(workers_on(n, req) for n in nodes):
        key = "sweep.gpus_per_worker" if req.gpus_per_worker > max((n.gpus for n in nodes), default=0) \
            else "sweep.cpus_per_worker"
        raise ConfigError(key, f"no node can host one worker of {req.describe()}; the cluster has {have}. "
                               "Lower the request, add nodes, or (autoscaling cluster) set "
                               "sweep.max_concurrent to skip this check")
    total = sum(workers_on(n, req) for n in nodes)
    groups = total // req.workers
    if groups < 1:
        raise ConfigError("sweep.workers_per_trial",
                          f"a trial needs {req.describe()} but the cluster holds only {total} such "
                          f"worker(s) ({have}); lower sweep.workers_per_trial")
    return max(1, min(groups, num_samples))


def cluster_plan(cfg: DictConfig, num_samples: int) -> tuple[int, str]:
    """Concurrency for a sweep on the connected cluster, and the cluster's description."""
    nodes = alive_nodes()
    req = TrialResources.from_config(cfg)
    return plan_concurrency(nodes, req, num_samples, cfg.sweep.max_concurrent), describe_cluster(nodes)


class UnplaceableTrialError(UserError):
    """The alive nodes cannot hold a trial's worker group, and have not for sweep.unplaceable_timeout_s."""


def holds_group(nodes: Sequence[Node], req: TrialResources) -> bool:
    """Whether these nodes, empty, hold one worker group of ``req`` (its workers may spread over nodes)."""
    return sum(workers_on(n, req) for n in nodes) >= req.workers


class PlacementWatch:
    """Raises UnplaceableTrialError once the alive nodes could not hold the trial's worker group for
    ``timeout_s`` in a row (0: never). Node totals, not free resources: a group that waits for other
    trials to finish is not unplaceable. ``check`` is called every few seconds while ``fit()`` runs."""

    def __init__(self, req: TrialResources, timeout_s: float, nodes=alive_nodes, clock=time.monotonic):
        self.req, self.timeout_s, self.nodes, self.clock = req, timeout_s, nodes, clock
        self.since: float | None = None

    def check(self) -> None:
        if not self.timeout_s:
            return
        try:
            nodes = self.nodes()
        except Exception:  # the GCS did not answer this time: no news, the next check will tell
            return
        if holds_group(nodes, self.req):
            self.since = None
            return
        now = self.clock()
        self.since = now if self.since is None else self.since
        if now - self.since >= self.timeout_s:
            raise UnplaceableTrialError(
                f"the trial needs {self.req.describe()} but the cluster now has {describe_cluster(nodes)}, "
                f"which cannot hold that (for {now - self.since:.0f} s; a node was lost?). Add a node that "
                "can, or lower sweep.cpus_per_worker / sweep.gpus_per_worker / sweep.workers_per_trial in a "
                "new sweep; resume=OUT_DIR retries it once the cluster can (sweep.unplaceable_timeout_s "
                "sets how long a trial waits)")
