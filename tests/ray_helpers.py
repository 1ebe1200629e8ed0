"""What the Ray test modules share: a cluster address of their own, a head started as a cluster node
starts one, and bounded waits."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray

FIT_TIMEOUT_S = 600
SWEEP_WAIT_S = 420  # a small sweep subprocess reaching a point of interest
HEAD_START_S = 120
RAY = str(Path(sys.executable).parent / "ray")
TOKEN_FILE = "auth_token"


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
    RAY_API_SERVER_ADDRESS, which would win over RAY_ADDRESS there, is unset meanwhile (a local
    sweep run in this process before may have left it naming its own Ray).
    """
    (port,) = free_ports(1)
    with pytest.MonkeyPatch.context() as env:  # restores both afterwards
        env.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        env.delenv("RAY_API_SERVER_ADDRESS", raising=False)
        yield port


def head_args(gcs_port: int, **args) -> dict:
    """``Cluster`` head_node_args: the GCS port and a dashboard port of its own. On the default port
    (8265), a second Ray on the machine finds it taken and runs without a dashboard: no State API, no
    Ray Train state, no job API."""
    (dashboard,) = free_ports(1)
    return {"gcs_server_port": gcs_port, "dashboard_port": dashboard, **args}


@contextmanager
def local_ray(**init_args) -> Iterator[object]:
    """``ray.init(address="local")`` as a sweep starts its Ray (raycluster.connect.pin_state_api): a
    dashboard port of its own, named in RAY_API_SERVER_ADDRESS for the Ray's processes; the variable is
    restored and Ray shut down afterwards."""
    from raycluster.connect import state_api_url

    (port,) = free_ports(1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_API_SERVER_ADDRESS", state_api_url(port))
        context = ray.init(address="local", dashboard_port=port, **init_args)
        try:
            yield context
        finally:
            ray.shutdown()


@contextmanager
def local_cluster(*nodes: dict, **head) -> Iterator[tuple[object, object]]:
    """A ``ray.cluster_utils.Cluster`` on ports of its own (``head`` args for the head, then ``nodes``),
    RAY_ADDRESS naming it and the sweep's Ray settings in the environment while its processes start
    (they inherit both), and this process connected: (cluster, ray.init's context). Both are shut down
    afterwards."""
    from ray.cluster_utils import Cluster

    from raycluster.connect import set_ray_env

    set_ray_env()
    with own_ray_address() as port:
        cluster = Cluster(initialize_head=True, head_node_args=head_args(port, **head))
        for node in nodes:
            cluster.add_node(**node)
        context = ray.init(address=cluster.address, logging_level="ERROR")
        try:
            yield cluster, context
        finally:
            ray.shutdown()
            cluster.shutdown()


def fit_bounded(trainer, timeout_s: float = FIT_TIMEOUT_S):
    """``trainer.fit()`` in a thread, so a hang fails the test instead of blocking the session."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=trainer.fit()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"TorchTrainer.fit() did not finish within {timeout_s} s"
    return out["result"]


def wait_for(condition, what: str, timeout_s: float, ended=None, interval_s: float = 0.25, on_timeout=None):
    """``condition()``'s first truthy value within ``timeout_s``. ``ended()`` says (a message) when what
    the test waits on has ended first, and the test fails with it; ``on_timeout()`` gives the timeout's
    detail (and may kill what hangs). Every wait of the tests is bounded through this one loop."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        message = ended() if ended else None
        if message:
            pytest.fail(f"{message} before {what}")
        time.sleep(interval_s)
    detail = on_timeout() if on_timeout else None
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}" + (f":\n{detail}" if detail else ""))


def process_ended(proc: subprocess.Popen, log: Path | None = None):
    """For ``wait_for``: a message once ``proc`` has exited (with the tail of its ``log``)."""
    def ended() -> str | None:
        if proc.poll() is None:
            return None
        tail = f" ({log.read_text()[-4000:]})" if log else ""
        return f"the process ended ({proc.returncode}){tail}"
    return ended


def wait_for_sweep(condition, proc, log, what: str, timeout_s: float = SWEEP_WAIT_S):
    """``wait_for`` while the sweep subprocess ``proc`` runs; it is killed when the wait times out."""
    return wait_for(condition, what, timeout_s, ended=process_ended(proc, log), interval_s=0.5,
                    on_timeout=lambda: proc.kill())


def tune_committed_checkpoint(search_dir: Path) -> Path | None:
    """The directory of a trial whose checkpoint Tune's saved experiment state holds (a trial that trains in
    its own process): what a retried or resumed trial goes on from. A ``checkpoint_*`` directory alone is
    not that: the trial writes it before its report reaches the driver, and a kill in between leaves one
    that the retry ignores."""
    from ray.tune import ExperimentAnalysis

    if not list(Path(search_dir).glob("experiment_state-*.json")):
        return None
    try:
        analysis = ExperimentAnalysis(str(search_dir))
        return next((Path(t.path) for t in analysis.trials if analysis.get_last_checkpoint(t) is not None), None)
    except (RuntimeError, ValueError, OSError):  # not written yet, or caught mid-write
        return None


def client_env(temp: str) -> dict[str, str]:
    """What a user's shell needs to talk to a token-authenticated head (README: Authentication): the head's
    token, here a file of its own in the head's temp dir (``ray start --head`` with token auth needs
    one to exist; the user's ~/.ray/auth_token is neither read nor written)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(Path(temp) / TOKEN_FILE),
            "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}


@dataclass
class Head:
    url: str  # the dashboard (Jobs API)
    gcs: str  # host:port, what RAY_ADDRESS names
    env: dict[str, str]  # a client shell's environment for this head


@contextmanager
def local_head(*, num_cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[Head]:
    """``ray start --head --block`` as a cluster node starts it: its own ports, temp dir and token, in a
    session of its own that is SIGKILLed by process group at the end (exactly its processes, never a
    broad ``ray stop``)."""
    temp = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray's unix socket paths are length-limited
    (Path(temp) / TOKEN_FILE).write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` makes
    gcs, dashboard, client, agent = free_ports(4)
    log = Path(temp) / "head.log"
    proc = subprocess.Popen(
        [RAY, "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
         f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}", f"--num-cpus={num_cpus}",
         f"--temp-dir={temp}", "--block"],
        env={**client_env(temp), **(env or {})}, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + HEAD_START_S
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=5)
                break
            except urllib.error.HTTPError:  # it answers (401 without the token): up
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the head did not start:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield Head(url, f"127.0.0.1:{gcs}", client_env(temp))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the head and every process it started (same session)
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
