"""sweep.warm_start: a new search's first trials are an earlier sweep's best configs, as far as they fit
its space; what was dropped is said. The earlier sweep is the session's fake sweep (tests/sweep/conftest.py)."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from plumbing.cli import parse_config
from plumbing.errors import ConfigError
from sweep.config import SweepConfig
from sweep.searcher import make_searcher
from sweep.settings import checked_config
from sweep.summary import search_trials, sweep_config
from sweep.warm_start import warm_start

pytestmark = pytest.mark.slow


def ranked_lrs(run_dir) -> list[float]:
    records = [r for r in search_trials(str(run_dir), sweep_config(str(run_dir))) if r.best_metric is not None]
    return [r.params["training.lr"] for r in sorted(records, key=lambda r: -r.best_metric)]


def test_the_first_trials_are_the_earlier_sweeps_best_configs(fake_sweep):
    dists = {"training.lr": FloatDistribution(1e-5, 1e-2, log=True),
             "training.batch_size": CategoricalDistribution([16, 32])}
    searcher = make_searcher(dists, seed=0, n_startup=3)
    warm = warm_start(searcher.study, str(fake_sweep.run_dir), dists, top=2)
    best = ranked_lrs(fake_sweep.run_dir)[:2]
    assert [p["training.lr"] for p in warm.enqueued] == best and not warm.dropped and not warm.outside
    proposed = [searcher.suggest(t) for t in ("a", "b", "c")]
    assert [p["training.lr"] for p in proposed[:2]] == best  # the batch size, new here, is sampled
    assert all(p["training.batch_size"] in (16, 32) for p in proposed)
    assert proposed[2]["training.lr"] not in best


def test_what_does_not_fit_the_space_is_dropped_and_said(fake_sweep):
    best = ranked_lrs(fake_sweep.run_dir)[0]
    narrow = {"training.lr": FloatDistribution(best * 1.5, 1e-1, log=True)}  # the earlier best lies outside
    searcher = make_searcher(narrow, seed=0, n_startup=3)
    warm = warm_start(searcher.study, str(fake_sweep.run_dir), narrow, top=1)
    assert warm.enqueued == [] and warm.outside == {"training.lr"}
    other = {"training.batch_size": CategoricalDistribution([16, 32])}
    warm = warm_start(make_searcher(other, seed=0, n_startup=3).study, str(fake_sweep.run_dir), other, top=3)
    assert warm.enqueued == [] and warm.dropped == {"training.lr"}
    assert "dropped (not searched here): training.lr" in warm.describe("old", 3)


def test_a_warm_start_from_a_directory_without_a_sweep_is_a_config_error(tmp_path):
    cfg = parse_config(SweepConfig, [f"out_dir={tmp_path / 'new'}", f"sweep.warm_start={tmp_path}"], "sweep.run", "")
    with pytest.raises(ConfigError, match="sweep.warm_start.*not a sweep run directory"):
        checked_config(cfg)
