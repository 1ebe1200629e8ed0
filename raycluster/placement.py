"""Trial resources on the cluster's nodes: how many worker groups the cluster holds, at once.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig

from plumbing.errors import ConfigError, UserError

EPS = 1e-9


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
