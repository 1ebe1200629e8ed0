"""The fake sweep that the summary and schema tests both read, built once per test process."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import sweep_fakes
from ray_helpers import local_ray


@pytest.fixture(scope="session")
def fake_sweep(tmp_path_factory) -> SimpleNamespace:
    """``sweep_fakes.fake_sweep`` in a run directory of its own (``.run_dir``, ``.cfg``). Its Ray is stopped
    once the stages have run: what the tests read (summary, trials, plots, report) comes from the files."""
    import ray

    ray.cloudpickle.register_pickle_by_value(sweep_fakes)  # workers cannot import tests/
    run_dir = Path(tmp_path_factory.mktemp("fake-sweep"))
    with local_ray(num_cpus=2, logging_level="ERROR"):  # never an unrelated running Ray
        cfg = sweep_fakes.fake_sweep(run_dir)
    return SimpleNamespace(run_dir=run_dir, cfg=cfg)
