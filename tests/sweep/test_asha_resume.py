"""ASHA across a stop and a resume: a sequential sweep stopped by SIGTERM after its third trial and resumed
takes exactly the decisions (proposals, ASHA stops, epochs) of the same sweep run straight through, and
its study on disk (``optuna.load_study``) holds what the record holds: each trial's best metric and epochs.

Tune restores the searcher but not the scheduler (ray-project/ray#30838); ``sweep.scheduler.SweepASHA``
rebuilds its rungs from the recorded trials. Fake trials (a learning curve per lr, no model) through the
product's own search stage, searcher, scheduler and signal handling, on one local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sweep_fakes
from ray_helpers import local_ray

from plumbing.stop_signals import StopSignals
from sweep.layout import STAGE1
from sweep.space import to_distributions
from sweep.stages import Interrupted, search
from sweep.study import TRIAL_ID_ATTR, study_name
from sweep.trials import load_trials, read_stops

EPOCHS, TRIALS = 4, 8
SPACE = {"training.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1}}


@pytest.fixture(scope="module")
def ray_for_module():
    import ray

    ray.cloudpickle.register_pickle_by_value(sweep_fakes)
    with local_ray(num_cpus=2, logging_level="ERROR"):
        yield


def study_matches_the_record(run_dir: Path, cfg) -> None:
    """The searcher's study on disk holds each trial's best metric and its epochs, as the record does."""
    import optuna

    study = optuna.load_study(study_name=study_name(str(run_dir), STAGE1), storage=f"sqlite:///{run_dir}/study.db")
    records = load_trials(str(run_dir), STAGE1, cfg)
    assert [t.value for t in study.trials] == [r.best_metric for r in records]
    assert [t.intermediate_values for t in study.trials] == [{h["epoch"]: h["metric"] for h in r.history}
                                                             for r in records]
    assert [t.user_attrs[TRIAL_ID_ATTR] for t in study.trials] == [r.trial_id for r in records]
    # what optuna-dashboard shows of each trial: its stage, epochs and why it stopped, as the record says
    labels = ("stage", "epochs_run", "planned_epochs", "stop_reason")
    assert [tuple(t.user_attrs[k] for k in labels) for t in study.trials] == [
        (STAGE1, r.epochs_run, r.planned_epochs, r.stop_reason) for r in records]


def sweep(run_dir: Path, stop: bool) -> list[tuple]:
    """The sweep's trials in creation order: (lr, epochs run, stop reason, the epoch ASHA stopped it)."""
    cfg = sweep_fakes.new_run_dir(run_dir, EPOCHS, f"sweep.num_samples={TRIALS}", "sweep.max_concurrent=1",
                                  "sweep.startup_trials=3", "seed=11")
    dists = to_distributions(SPACE, cfg)
    stop_file = run_dir / "stop-sent"
    if not stop:
        stop_file.touch()
    trainable = sweep_fakes.curve_trainable(EPOCHS, str(stop_file), os.getpid())
    with StopSignals():
        if stop:
            with pytest.raises(Interrupted):
                search(cfg, str(run_dir), dists, trainable, concurrency=1)
            assert len(load_trials(str(run_dir), STAGE1, cfg)) == 4  # three ended, the fourth unfinished
        search(cfg, str(run_dir), dists, trainable, concurrency=1)
    study_matches_the_record(run_dir, cfg)
    stops = read_stops(str(run_dir))
    return [(r.params["training.lr"], r.epochs_run, r.stop_reason, stops.get((STAGE1, r.trial_id)))
            for r in load_trials(str(run_dir), STAGE1, cfg)]


@pytest.mark.slow
def test_a_resumed_sequential_sweep_decides_as_the_uninterrupted_one(ray_for_module, tmp_path):
    straight = sweep(tmp_path / "straight", stop=False)
    assert any(reason == "asha" for _, _, reason, _ in straight[3:])  # the premise: stops after the resume
    resumed = sweep(tmp_path / "resumed", stop=True)
    assert resumed == straight


@pytest.mark.slow
def test_a_time_budget_stops_the_search_resumably(ray_for_module, tmp_path):
    """sweep.time_budget_s: the search stops as on SIGTERM when the budget is spent (3 trials of 4
    half-second epochs, one at a time, against a 4 s budget), and a resume finishes it."""
    run_dir = tmp_path / "budget"
    cfg = sweep_fakes.new_run_dir(run_dir, EPOCHS, "sweep.num_samples=3", "sweep.max_concurrent=1",
                                  "sweep.scheduler=fifo", "sweep.time_budget_s=4")
    dists = to_distributions(SPACE, cfg)
    (run_dir / "no-stop").touch()
    trainable = sweep_fakes.curve_trainable(EPOCHS, str(run_dir / "no-stop"), os.getpid(), 0.5)
    with StopSignals(cfg.sweep.time_budget_s) as stop, pytest.raises(Interrupted):
        search(cfg, str(run_dir), dists, trainable, concurrency=1)
    assert stop.budget_spent and stop.exit_status() == 0
    assert sum(r.epochs_run == EPOCHS for r in load_trials(str(run_dir), STAGE1, cfg)) < 3
    with StopSignals():
        search(cfg, str(run_dir), dists, trainable, concurrency=1)
    assert [r.epochs_run for r in load_trials(str(run_dir), STAGE1, cfg)] == [EPOCHS] * 3
