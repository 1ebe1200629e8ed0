"""The record's study (what the plots draw) is the searcher's study as stored, with the record's
attributes added; a trial no searcher proposed comes from its record."""

from __future__ import annotations

from sweep_fakes import new_run_dir
from test_searcher import DISTS, run_trial

from sweep.layout import STAGE1, STAGE2, STUDY_FILE
from sweep.searcher import make_searcher
from sweep.study import build_study, stored_trials, study_name
from sweep.trials import TrialRecord


def record(trial_id: str, stage: str, best: float, history: list[float]) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, experiment=stage, params={"training.lr": 1e-3, "training.batch_size": 16},
                       state="TERMINATED", stop_reason="asha", error=None, epochs_run=len(history),
                       planned_epochs=4, final_metric=history[-1], best_metric=best, best_epoch=1,
                       path=f"/x/{stage}/trial_{trial_id}",
                       history=[{"epoch": e, "metric": v} for e, v in enumerate(history, start=1)])


def test_plots_draw_what_the_searcher_was_told_with_the_records_attributes(tmp_path):
    cfg = new_run_dir(tmp_path, 4)
    url = f"sqlite:///{tmp_path / STUDY_FILE}"
    for stage, trial_id, curve in ((STAGE1, "a", [0.2, 0.5, 0.3]), (STAGE2, "b", [0.4])):
        run_trial(make_searcher(DISTS, seed=0, n_startup=2, url=url, name=study_name(str(tmp_path), stage)),
                  trial_id, curve)
    stored = stored_trials(str(tmp_path), cfg)
    assert sorted(stored) == ["a", "b"]
    # "a"'s record disagrees with what the searcher was told: the plots show the latter
    records = [record("a", STAGE1, 0.9, [0.9]), record("grid", STAGE1, 0.7, [0.6, 0.7]),
               record("b", STAGE2, 0.4, [0.4])]
    study = build_study(records, DISTS, str(tmp_path), stored)
    a, grid, b = study.trials
    assert (a.value, a.intermediate_values) == (0.5, {1: 0.2, 2: 0.5, 3: 0.3})
    assert a.params == stored["a"].params and a.params != records[0].params
    assert (a.user_attrs["stop_reason"], a.user_attrs["trial"]) == ("asha", "search/trial_a")
    assert (grid.value, grid.intermediate_values, grid.user_attrs["stage"]) == (0.7, {1: 0.6, 2: 0.7}, STAGE1)
    assert (b.value, b.user_attrs["stage"]) == (0.4, STAGE2)


def test_a_run_dir_without_a_study_has_no_stored_trials(tmp_path):
    assert stored_trials(str(tmp_path), new_run_dir(tmp_path, 4)) == {}
