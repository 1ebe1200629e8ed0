"""The sweep's ASHA on its own (no Ray cluster): a rung stops a trial only once reduction_factor trials
reached it before, and then as Ray's ASHA would (below the rung's top 1/reduction_factor)."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from sweep.scheduler import SweepASHA, rung_epochs

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def decide(asha: SweepASHA, trial_id: str, epoch: int, best: float) -> str:
    trial = SimpleNamespace(trial_id=trial_id)
    if epoch == 1:
        asha.on_trial_add(None, trial)
    return asha.on_trial_result(None, trial, {"epoch": epoch, "best_metric": best})


def test_the_first_arrivals_at_a_rung_go_on_then_the_rung_cuts(tmp_path):
    asha = SweepASHA(str(tmp_path), "search", str(tmp_path / "stops.jsonl"), max_t=4, grace_period=1,
                     reduction_factor=2)
    assert asha.milestones == [1, 2, 4]
    assert decide(asha, "a", 1, 0.6) == CONTINUE  # alone at the rung
    assert decide(asha, "b", 1, 0.5) == CONTINUE  # Ray's ASHA stops it: below the one trial there
    assert decide(asha, "c", 1, 0.4) == STOP  # two before it: below their median
    assert decide(asha, "d", 1, 0.7) == CONTINUE  # above it
    assert decide(asha, "b", 2, 0.55) == CONTINUE and decide(asha, "a", 2, 0.9) == CONTINUE
    assert decide(asha, "d", 2, 0.6) == STOP  # the second rung holds two: below their median
    assert (tmp_path / "stops.jsonl").read_text().count("\n") == 2  # the record says asha for c and d


def test_rungs_are_rays():
    assert rung_epochs(3, 10, 2) == [3, 6] and rung_epochs(2, 10, 3) == [2, 6] and rung_epochs(1, 8, 2) == [1, 2, 4, 8]
