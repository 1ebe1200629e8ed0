"""The sweep's ASHA on its own (no Ray cluster): a rung stops a trial as Ray's ASHA would (below the top
1/reduction_factor of the trials that reached it before), comparing each trial's best so far of the rung
metric, and records each stop."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from sweep.scheduler import SweepASHA

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def decide(asha: SweepASHA, trial_id: str, epoch: int, value: float) -> str:
    trial = SimpleNamespace(trial_id=trial_id)
    if epoch == 1:
        asha.on_trial_add(None, trial)
    return asha.on_trial_result(None, trial, {"epoch": epoch, "val_roc_auc": value, "metric": 0.0})


def make(tmp_path, **kw) -> SweepASHA:
    return SweepASHA(str(tmp_path), "search", str(tmp_path / "stops.jsonl"), rung_key="val_roc_auc", **kw)


def test_a_rung_cuts_below_its_top_half_and_records_each_stop(tmp_path):
    asha = make(tmp_path, max_t=4, grace_period=1, reduction_factor=2)
    assert decide(asha, "a", 1, 0.6) == CONTINUE  # alone at the rung
    assert decide(asha, "b", 1, 0.5) == STOP  # below the one trial there
    assert decide(asha, "c", 1, 0.7) == CONTINUE  # above the median of a and b
    assert decide(asha, "a", 2, 0.9) == CONTINUE and decide(asha, "c", 2, 0.75) == STOP
    assert (tmp_path / "stops.jsonl").read_text().count("\n") == 2  # the record says asha for b and c


def test_a_rung_compares_the_best_so_far_of_the_rung_metric_not_the_epoch_or_the_trial_metric(tmp_path):
    asha = make(tmp_path, max_t=4, grace_period=2, reduction_factor=2)
    assert decide(asha, "a", 1, 0.7) == CONTINUE and decide(asha, "a", 2, 0.72) == CONTINUE
    assert decide(asha, "b", 1, 0.8) == CONTINUE
    assert decide(asha, "b", 2, 0.5) == CONTINUE  # its epoch fell to 0.5, its best so far (0.8) leads
    assert decide(asha, "c", 1, float("nan")) == CONTINUE  # no value yet: nothing to compare
    assert decide(asha, "c", 2, 0.75) == STOP  # best so far 0.75, below the rung's median (0.76)
