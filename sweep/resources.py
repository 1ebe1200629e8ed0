"""Ray connection and trial resources: how many worker groups the cluster holds, at once.

Tune starts a driver per trial whether or not its workers can be placed; a worker group that
cannot be placed waits, times out and retries forever. So concurrency is derived from what the
nodes actually have, and a request no node can satisfy fails before the sweep starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_prep.errors import ConfigError

# Faster result delivery, one actor less per trial (see RAY-NOTES "Start-up and knobs"), and the
# Train runs' state (workers, nodes, GPU ids, attempts) in the dashboard's Train view.
RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",
}
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
    def from_config(cls, cfg: Any) -> TrialResources:
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
    """Join the cluster named by RAY_ADDRESS, else start a local Ray (dashboard on)."""
    import ray

    set_ray_env()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        ray.init(address=address, logging_level="WARNING")
    return os.environ.get("RAY_ADDRESS") or "local"


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


def cluster_plan(cfg: Any, num_samples: int) -> tuple[int, str]:
    """Concurrency for a sweep on the connected cluster, and the cluster's description."""
    nodes = alive_nodes()
    req = TrialResources.from_config(cfg)
    return plan_concurrency(nodes, req, num_samples, cfg.sweep.max_concurrent), describe_cluster(nodes)
