"""What the Ray test modules share: a cluster address of their own, and a bounded ``fit()``."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

FIT_TIMEOUT_S = 600
SWEEP_WAIT_S = 420  # a small sweep subprocess reaching a point of interest


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports nobody listens on now (bound together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextmanager
def own_ray_address() -> Iterator[int]:
    """A free GCS port, with RAY_ADDRESS naming it while the cluster's processes start (they inherit it).

    Ray code that looks for "the" cluster without an address (Ray Train's placement-group cleaner,
    through the State API) reads RAY_ADDRESS; unset, it fails when another Ray runs on the machine,
    and a stopped trial's placement group is never freed: the next trial waits for it forever.
    """
    (port,) = free_ports(1)
    saved = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    try:
        yield port
    finally:
        if saved is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = saved


def fit_bounded(trainer, timeout_s: float = FIT_TIMEOUT_S):
    """``trainer.fit()`` in a thread, so a hang fails the test instead of blocking the session."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=trainer.fit()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"TorchTrainer.fit() did not finish within {timeout_s} s"
    return out["result"]


def wait_for(condition, proc, log, what: str, timeout_s: float = SWEEP_WAIT_S):
    """``condition()``'s first truthy value while the sweep subprocess ``proc`` runs; the test fails
    with the tail of its ``log`` when it ends first, and kills it after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")
