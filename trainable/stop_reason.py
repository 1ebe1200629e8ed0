"""How a run ended: the one vocabulary of the HParams column, summary.json, the study, the progress
lines and the plots (``StopReason``), and the one function that decides it (``classify``).

The training loop knows how its own run ended when it returns (finished or stopped early); only the
sweep knows the rest (its scheduler stopped the trial, Ray gave up on it, the sweep was interrupted
before the trial ended), so both ask ``classify`` with what they know.
"""

from __future__ import annotations

from typing import Literal, get_args

StopReason = Literal["finished", "asha", "early_stop", "error", "unfinished"]
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)
# What a run's end can be; "unfinished" is the record's word for a trial an interrupted sweep left running.
ENDED_REASONS: tuple[StopReason, ...] = ("finished", "asha", "early_stop", "error")


def classify(*, epochs: int, planned: int, errored: bool = False, running: bool = False,
             scheduler_stopped: bool = False, early_stopped: bool = True) -> StopReason:
    """Why a run that reported ``epochs`` of its ``planned`` ones ended. ``running``: no one ended it
    (an interrupted sweep); ``early_stopped``: its metric went ``training.patience`` epochs without
    improving (the default: a run that returned on its own before its planned epochs did)."""
    if errored:
        return "error"
    if epochs >= planned:
        return "finished"
    if running:
        return "unfinished"
    if scheduler_stopped:
        return "asha"
    return "early_stop" if early_stopped else "unfinished"
