"""Shared fixtures: a small demo configuration whose cache (tiny model, features) is built once."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _one_ray_token() -> None:
    """One Ray token file for the session: every local Ray it starts (in test processes, parallel
    workers, sweep subprocesses) reads it. On a fresh machine the first ``ray.init`` writes
    ~/.ray/auth_token; two starting at once would each write their own and lock the other one out."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return  # given by the caller, or by the session that started this worker
    path = Path(tempfile.mkdtemp(prefix="ray-token-")) / "auth_token"
    path.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)


_one_ray_token()
# The loop's small tensors gain nothing from intra-op threads, and on a loaded 2-core machine
# OpenMP's thread hand-off makes each tiny op cost milliseconds (seen: a CRF decode 400x slower).
torch.set_num_threads(1)

# Small enough for seconds per epoch on one CPU core, big enough to learn from.
_EXIT_STATUS = pytest.StashKey[int]()

SMALL_DEMO = {"data": {"demo_posts": 120}, "features": {"max_length": 128}}


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> str:
    """One cache dir per test session: the tiny model and each task's features are built once."""
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def train_config(demo_cache):
    """``train_config(task, out_dir, **training)`` -> a resolved TrainConfig as a plain dict."""
    from trainable.config import TrainConfig

    def make(task: str, out_dir, **training) -> dict:
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), SMALL_DEMO,
                              {"task": task, "out_dir": str(out_dir), "cache_dir": demo_cache,
                               "training": training})
        return OmegaConf.to_container(cfg, resolve=True)

    return make


@pytest.fixture(scope="session")
def demo_features(train_config, tmp_path_factory):
    """``demo_features(task)`` -> the FeatureSet of the small demo (cached per task)."""
    from data_prep.pipeline import prepare_features

    built = {}

    def get(task: str):
        if task not in built:
            cfg = OmegaConf.create(train_config(task, tmp_path_factory.mktemp("unused")))
            built[task] = prepare_features(cfg, verbose=False)
        return built[task]

    return get


# ---------------------------------------------------------------- parallel workers
# The suite runs on two pytest-xdist workers (pyproject: -n 2), whole modules at a time so module
# fixtures are built once. The modules that start Ray (local clusters, heads, sweeps) form two units,
# each run module after module in one worker, so at most two of the suite's Rays run at once, each on
# ports of its own (ray_helpers: local_ray, local_cluster, head_args). Units are handed out longest
# first: the two Ray units, then the CPU-bound modules that take minutes, then the rest, to whichever
# worker is free.
RAY_UNITS = {
    "ray-clusters": ("tests/sweep/test_node_loss.py", "tests/sweep/test_cluster_jobs.py",
                     "tests/raycluster/test_reaper.py", "tests/sweep/test_sweep_run.py",
                     "tests/raycluster/test_local_ray.py", "tests/trainable/test_gpu.py",
                     "tests/sweep/test_dashboard.py"),
    "ray-sweeps": ("tests/sweep/", "tests/trainable/test_ray_train.py"),  # every other module that starts Ray
}
LONG_MODULES = ("tests/trainable/test_loop.py", "tests/trainable/test_evaluate_predict.py")


def _unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return next((unit for unit, prefixes in RAY_UNITS.items() if module.startswith(prefixes)), module)


def _rank(nodeid: str) -> int:
    order = [*RAY_UNITS, *LONG_MODULES]
    unit = _unit(nodeid)
    return order.index(unit) if unit in order else len(order)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: the order within a unit is kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndRay(LoadScopeScheduling):
        """xdist's scope scheduling (each unit to one worker, in collection order: pyproject passes
        --no-loadscope-reorder) with the Ray modules as two units."""

        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return ModulesAndRay(config, log)


# ---------------------------------------------------------------- process exit
# Several modules start and stop a local Ray in this one process. Ray's C++ core worker threads
# can outlive ``ray.shutdown()`` and touch freed state while the interpreter finalizes
# (ray-project/ray#31145): CI once saw "373 passed" followed by a segmentation fault (exit 139)
# during interpreter teardown. Every test and fixture teardown has run by then, so the process
# ends here with pytest's own exit status instead of going through that finalization.


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None or "ray" not in sys.modules:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
