"""Pure units of trial placement (no Ray started): how many trials fit at once, and when a trial no
node can hold errors. The cluster scenarios that exercise them live in tests/sweep/test_sweep_run.py
and test_node_loss.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from plumbing.errors import ConfigError
from raycluster.placement import Node, PlacementWatch, TrialResources, UnplaceableTrialError, plan_concurrency


def test_concurrency_is_the_number_of_worker_groups_that_fit():
    nodes = [Node("a", 8, 2), Node("b", 4, 1), Node("head", 4, 0)]
    one_gpu = TrialResources(1, 1, 1)
    assert plan_concurrency(nodes, one_gpu, num_samples=10) == 3
    assert plan_concurrency(nodes, one_gpu, num_samples=2) == 2
    assert plan_concurrency(nodes, TrialResources(1, 1, 0.25), num_samples=20) == 12
    assert plan_concurrency(nodes, TrialResources(2, 1, 1), num_samples=10) == 1
    assert plan_concurrency(nodes, TrialResources(1, 2, 0), num_samples=20) == 8
    assert plan_concurrency(nodes, TrialResources(1, 1, 4), num_samples=5, max_concurrent=4) == 4
    with pytest.raises(ConfigError, match="no node can host one worker"):
        plan_concurrency(nodes, TrialResources(1, 16, 0), num_samples=5)
    with pytest.raises(ConfigError, match="3 node\\(s\\): 8 CPU/2 GPU, 4 CPU/1 GPU, 4 CPU/0 GPU"):
        plan_concurrency(nodes, TrialResources(1, 1, 3), num_samples=5)


def test_placement_watch_errors_only_after_the_nodes_could_not_hold_the_group_for_the_timeout():
    clock = SimpleNamespace(now=0.0)
    small, big = Node("small", 1, 0), Node("big", 2, 0)
    nodes = [small, big]
    watch = PlacementWatch(TrialResources(1, 2, 0), 30, nodes=lambda: nodes, clock=lambda: clock.now)
    watch.check()
    nodes = [small]  # big lost
    for clock.now in (1.0, 20.0, 30.9):
        watch.check()
    nodes = [small, big]  # a replacement came: the wait starts again next time
    clock.now = 31.0
    watch.check()
    nodes = [small]
    for clock.now in (40.0, 69.0):
        watch.check()
    clock.now = 70.0
    with pytest.raises(UnplaceableTrialError, match=r"needs 1 worker\(s\) x \(2 CPU\).*1 node\(s\): 1 CPU/0 GPU"):
        watch.check()
    # Workers of one trial may spread: two 1-CPU nodes hold a group of two 1-CPU workers, one does not.
    two = PlacementWatch(TrialResources(2, 1, 0), 0.5, nodes=lambda: [small, small], clock=lambda: clock.now)
    one = PlacementWatch(TrialResources(2, 1, 0), 0.5, nodes=lambda: [small], clock=lambda: clock.now)
    two.check(), one.check()
    clock.now = 100.0
    two.check()
    with pytest.raises(UnplaceableTrialError, match=r"needs 2 worker\(s\) x \(1 CPU\)"):
        one.check()
    never = PlacementWatch(TrialResources(1, 4, 0), 0, nodes=lambda: [small], clock=lambda: clock.now)
    never.check()
    clock.now = 1e9
    never.check()  # 0: waits forever, as Ray Train does
