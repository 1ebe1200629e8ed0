"""Pure units of a trial's driver (no Ray started): which failures a Tune retry of the driver repeats
at once. The scenarios that exercise it live in test_node_loss.py and test_sweep_run.py."""

from __future__ import annotations

import pytest

from raycluster.placement import UnplaceableTrialError


def test_a_driver_tune_retries_raises_what_it_raised_before_in_the_same_sweep_only(tmp_path, monkeypatch):
    from ray.exceptions import RayActorError

    from plumbing.errors import UserError
    from sweep import driver
    from sweep.layout import FAILURE_FILE

    path = tmp_path / FAILURE_FILE
    monkeypatch.setattr(driver, "sweep_id", lambda: "session_a/01000000")
    driver.repeat_failure(path)  # nothing recorded: trains
    driver.record_failure(path, RayActorError())  # its controller died: Tune's retry may get past that
    assert not path.exists()
    for error, raised in ((UserError("bad data"), UserError), (UnplaceableTrialError("no node"), UnplaceableTrialError),
                          (ValueError("a bug"), RuntimeError)):
        driver.record_failure(path, error)
        with pytest.raises(raised, match=str(error)) as err:
            driver.repeat_failure(path)
        assert type(err.value) is raised and "not retried" in str(err.value)
    monkeypatch.setattr(driver, "sweep_id", lambda: "session_a/02000000")  # a resumed sweep: another job
    driver.repeat_failure(path)
    assert not path.exists()
