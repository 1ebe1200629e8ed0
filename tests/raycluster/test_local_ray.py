"""A sweep's own local Ray beside another Ray on the same machine (a second sweep, a notebook, a
``ray start`` head).

Without RAY_ADDRESS ``raycluster.connect.connect`` starts a Ray of its own, as the README says (plain
``ray.init()`` would join a ``ray start`` cluster it finds on the machine). Ray code in workers that
asks the State API without an address (Ray Train's placement-group cleaner, which frees the
placement group of a trial ASHA stopped) looks for "the" Ray on the machine and fails when there
are two; then the next trial waits forever for the unfreed group. The local Ray that ``connect``
starts names itself to its processes, so from a worker the State API answers for this Ray. Both
Rays run in processes of their own, stopped by pid / process group.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ray_helpers import local_head

REPO = Path(__file__).resolve().parents[2]

# What Ray Train's placement-group cleaner does from a worker: get_actor without an address.
PROBE = textwrap.dedent("""
    import ray
    from ray.util.state import get_actor
    from raycluster.connect import connect

    connect()

    @ray.remote
    class Controller:
        def actor_id(self):
            return ray.get_runtime_context().get_actor_id()

    @ray.remote
    def state_of(actor_id):
        actor = get_actor(actor_id, timeout=30)
        return actor.state if actor else "not found"

    print("gcs:", ray.get_runtime_context().gcs_address, flush=True)
    controller = Controller.remote()
    print("state:", ray.get(state_of.remote(ray.get(controller.actor_id.remote())), timeout=120), flush=True)
""")


@pytest.mark.slow
def test_workers_of_a_sweeps_local_ray_reach_their_own_ray_with_another_one_running():
    with local_head(num_cpus=1) as other:  # the other Ray on the machine
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                             timeout=240)
    assert "gcs: " in out.stdout and f"gcs: {other.gcs}" not in out.stdout, out.stdout + out.stderr[-4000:]
    assert "state: ALIVE" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]
