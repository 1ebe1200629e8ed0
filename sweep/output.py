"""What a sweep prints: its own one-line events from sweep.verbose=1, Ray's, Tune's and the
feature builders' output only from sweep.verbose=2 (otherwise left in Ray's session logs)."""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from raycluster.connect import quiet_ray
from sweep.config import EVENTS, RAY_OUTPUT


def fmt_value(value: Any) -> str:
    """A param's value as a line or a table shows it: 3 significant digits, "-" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def quiet_libraries(verbose: int) -> None:
    """Below sweep.verbose=2 Ray's output stays in its session logs and Optuna says only warnings; Ray
    reads its knobs when it is imported, so this runs first."""
    if verbose < RAY_OUTPUT:
        import optuna

        quiet_ray()
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def info(cfg: DictConfig, message: str) -> None:
    """A line of the sweep's own progress, shown from sweep.verbose=1."""
    if cfg.sweep.verbose >= EVENTS:
        print(message, flush=True)


@contextmanager
def tune_output(verbose: int) -> Iterator[None]:
    """The environment Tune reads in ``fit()``, set for that call only.

    TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1: no tensorboardX logger (a trial's TensorBoard run is the
    loop's own, ``<trial>/tb``); the CSV and JSON loggers the summary reads are passed explicitly.
    RAY_AIR_NEW_OUTPUT=0 below verbose 2: Tune's default reporter prints its experiment and status
    tables even at verbose=0, the classic one honours it.
    """
    values = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    if verbose < RAY_OUTPUT:
        values["RAY_AIR_NEW_OUTPUT"] = "0"
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def quiet_bars(verbose: int) -> Iterator[None]:
    """Below sweep.verbose=2 the progress bars of building features (tokenizing, writing the tiny
    model's shards) stay off the console: the sweep says in one line what was prepared. They write to
    stderr; errors still reach the user as exceptions."""
    if verbose >= RAY_OUTPUT:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield

