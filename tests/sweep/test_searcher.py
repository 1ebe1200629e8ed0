"""The sweep's searcher: Optuna is told each trial's kept (best) metric and its epochs, in a study on disk
that ``optuna.load_study`` reads, and a searcher restored from Tune's saved state proposes what the
uninterrupted one would have."""

from __future__ import annotations

import math
import pickle

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from plumbing.errors import ConfigError
from sweep.searcher import check_new_study, make_searcher, study_storage
from sweep.study import TRIAL_ID_ATTR

DISTS = {"training.lr": FloatDistribution(1e-5, 1e-2, log=True),
         "training.batch_size": CategoricalDistribution([16, 32])}


def score(params: dict) -> float:
    return 1 - abs(math.log10(params["training.lr"]) + 3) / 3


def run_trial(searcher, trial_id: str, curve: list[float]) -> dict:
    """Ask, report one result per epoch (with the best so far, as the loop does), complete; the params."""
    params = searcher.suggest(trial_id)
    best = -math.inf
    result = {}
    for epoch, value in enumerate(curve, start=1):
        best = max(best, value)
        result = {"epoch": epoch, "metric": value, "best_metric": best, "training_iteration": epoch + 7}
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result)
    return params


def test_the_study_holds_each_trials_best_metric_and_its_epochs(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    searcher = make_searcher(DISTS, seed=3, n_startup=2, url=url, name="run/search")
    run_trial(searcher, "a", [0.2, 0.5, 0.3])  # the last epoch is worse than the kept one
    run_trial(searcher, "b", [0.1, 0.0])
    study = optuna.load_study(study_name="run/search", storage=url)
    first, second = study.trials
    assert (first.value, second.value) == (0.5, 0.1)
    assert first.intermediate_values == {1: 0.2, 2: 0.5, 3: 0.3}  # keyed by epoch, not Tune's iteration
    assert [t.user_attrs[TRIAL_ID_ATTR] for t in study.trials] == ["a", "b"]
    assert study.best_trial.number == 0


def test_a_trial_without_an_epoch_is_pruned_or_failed(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    searcher = make_searcher(DISTS, seed=3, n_startup=2, url=url, name="s")
    searcher.suggest("stopped")
    searcher.on_trial_complete("stopped", {"training_iteration": 1})
    searcher.suggest("broken")
    searcher.on_trial_complete("broken", None, error=True)
    states = [t.state for t in optuna.load_study(study_name="s", storage=url).trials]
    assert states == [TrialState.PRUNED, TrialState.FAIL]


def test_a_restored_searcher_proposes_what_the_uninterrupted_one_would(tmp_path):
    curves = lambda p: [score(p) * 0.5, score(p)]  # noqa: E731
    straight = make_searcher(DISTS, seed=5, n_startup=2, url=f"sqlite:///{tmp_path / 'a.db'}", name="s")
    expected = []
    for i in range(6):
        params = straight.suggest(f"t{i}")
        expected.append(params)
        run_trial_told(straight, f"t{i}", params, curves(params))

    url = f"sqlite:///{tmp_path / 'b.db'}"
    first = make_searcher(DISTS, seed=5, n_startup=2, url=url, name="s")
    got = []
    for i in range(3):
        params = first.suggest(f"t{i}")
        got.append(params)
        run_trial_told(first, f"t{i}", params, curves(params))
    first.save(str(tmp_path / "searcher.pkl"))
    first.suggest("orphan")  # asked after Tune's last save, then the driver died

    resumed = make_searcher(DISTS, seed=99, n_startup=2, url=url, name="s")  # as pickled before trial 1
    resumed.restore(str(tmp_path / "searcher.pkl"))
    for i in range(3, 6):
        params = resumed.suggest(f"t{i}")
        got.append(params)
        run_trial_told(resumed, f"t{i}", params, curves(params))
    assert got == expected
    study = optuna.load_study(study_name="s", storage=url)
    assert study.trials[3].state == TrialState.FAIL  # the orphan, closed on restore


def run_trial_told(searcher, trial_id: str, params: dict, curve: list[float]) -> None:
    best = max(curve)
    for epoch, value in enumerate(curve, start=1):
        searcher.on_trial_result(trial_id, {"epoch": epoch, "metric": value, "best_metric": best})
    searcher.on_trial_complete(trial_id, {"epoch": len(curve), "metric": curve[-1], "best_metric": best})


def test_random_search_ignores_results_and_repeats_with_its_seed():
    a = make_searcher(DISTS, seed=1, n_startup=2, kind="random")
    b = make_searcher(DISTS, seed=1, n_startup=2, kind="random")
    assert [a.suggest(f"t{i}") for i in range(4)] == [b.suggest(f"t{i}") for i in range(4)]


def test_a_new_sweep_refuses_a_study_name_taken_in_shared_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    make_searcher(DISTS, seed=1, n_startup=2, url=url, name="runs/search")
    check_new_study(url, "other/search")
    with pytest.raises(ConfigError, match="already holds a study named 'runs/search'"):
        check_new_study(url, "runs/search")


def test_importing_the_sweep_command_leaves_ray_unimported():
    """sweep.run sets Ray's environment (token auth for its local Ray, quiet logs) before Ray is imported;
    a module that imports Ray at load time made the local Ray refuse the driver's own connection."""
    import subprocess
    import sys

    code = "import sys, sweep.run; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_trial_told_before_a_resume_is_not_told_again(tmp_path):
    """The driver told a trial, then died before Tune saved the searcher: the restored searcher meets
    the trial's end again and leaves the stored trial (value and labels) as it was."""
    from sweep.searcher import StudyLabels

    url = f"sqlite:///{tmp_path / 'study.db'}"
    labels = StudyLabels(str(tmp_path), "search", planned_epochs=2)
    searcher = make_searcher(DISTS, seed=3, n_startup=2, url=url, name="s", labels=labels)
    searcher.suggest("a")
    state = pickle.loads(pickle.dumps(searcher.get_state()))  # what Tune saved before the end
    result = {"epoch": 2, "metric": 0.4, "best_metric": 0.5}
    searcher.on_trial_complete("a", result)
    restored = make_searcher(DISTS, seed=3, n_startup=2, url=url, name="s", labels=labels)
    restored.set_state(state)
    restored.on_trial_complete("a", {**result, "best_metric": 0.9})
    (trial,) = optuna.load_study(study_name="s", storage=url).trials
    assert trial.value == 0.5 and trial.user_attrs["stop_reason"] == "finished"


def test_the_study_file_is_written_without_an_fsync_per_commit_and_survives_pickling(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    for db in (study_storage(url), pickle.loads(pickle.dumps(study_storage(url)))):  # Tune pickles the searcher
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0  # OFF
    searcher = make_searcher(DISTS, 0, 2, url=url)
    run_trial(searcher, "a", [0.2, 0.4])
    assert optuna.load_study(study_name="search", storage=url).trials[0].value == 0.4  # read back as usual
    with study_storage(f"{url}?timeout=30").engine.connect() as conn:  # a URL with arguments: as given
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, SQLite's default
