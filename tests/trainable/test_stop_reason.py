"""The one classifier of how a run ended, as the loop, the sweep's live view and its record ask it."""

from __future__ import annotations

import pytest

from trainable.stop_reason import ENDED_REASONS, STOP_REASONS, classify


@pytest.mark.parametrize(("facts", "reason"), [
    ({"epochs": 4, "planned": 4}, "finished"),
    ({"epochs": 4, "planned": 4, "scheduler_stopped": True}, "finished"),  # ASHA's stop at max_t is the end
    ({"epochs": 2, "planned": 4}, "early_stop"),  # the loop returned on its own before its planned epochs
    ({"epochs": 2, "planned": 4, "scheduler_stopped": True}, "asha"),
    ({"epochs": 2, "planned": 4, "early_stopped": False}, "unfinished"),  # ended, but neither: say so
    ({"epochs": 2, "planned": 4, "running": True, "scheduler_stopped": True}, "unfinished"),
    ({"epochs": 4, "planned": 4, "errored": True}, "error"),  # an error wins over everything
])
def test_classify(facts, reason):
    assert classify(**facts) == reason


def test_every_ended_reason_is_a_stop_reason_and_only_unfinished_is_not_an_end():
    assert set(STOP_REASONS) - set(ENDED_REASONS) == {"unfinished"}
