"""What a sweep prints: its own one-line events from sweep.verbose=1, Ray's, Tune's and the
feature builders' output only from sweep.verbose=2 (otherwise left in Ray's session logs)."""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from sweep.config import EVENTS, RAY_OUTPUT


def fmt_value(value: Any) -> str:
    """A param's value as a line or a table shows it: 3 significant digits, "-" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def info(cfg: DictConfig, message: str) -> None:
    """A line of the sweep's own progress, shown from sweep.verbose=1."""
    if cfg.sweep.verbose >= EVENTS:
        print(message, flush=True)


def quiet_ray(verbose: int) -> None:
    """Below sweep.verbose=2, Ray's own output stays in its session logs (/tmp/ray/session_*/logs).

    Environment knobs Ray reads when it is imported and initialized, so this runs before ``connect``:
    the workers' and raylets' lines are not forwarded to this process (``log_to_driver``), Ray's
    notices to every driver (RAY_NOTICES) are left out of stdout and a piped stdout gets no colour
    codes; a local Ray gets token authentication by asking for it, as Ray does by default, minus the warning it
    prints then (a remote cluster's mode is the user's to set); Optuna says only warnings. Tune's warning
    that it saved its experiment state often goes too: an in-process trial's checkpoint makes Tune save it
    at once (num_to_keep=1), which is what a resume after kill -9 starts from.
    """
    if verbose >= RAY_OUTPUT:
        return
    import optuna

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_LOG_TO_DRIVER", "0")
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # a piped log gets "(raylet)", not escape codes
    if not isinstance(sys.stdout, WithoutRayNotices):
        sys.stdout = WithoutRayNotices(sys.stdout)
    if os.environ.get("RAY_ADDRESS", "").strip() in ("", "local"):
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


# What the raylet says to every driver when a node has started 4x its CPUs in worker processes: in a
# sweep that is every trial's actor, Train controller and workers, as planned, not a problem to act on.
RAY_NOTICES = ("worker processes have been started on node",)


class WithoutRayNotices:
    """This process's stdout less Ray's notices (RAY_NOTICES), which Ray prints to every driver whatever
    ``log_to_driver`` says; every other line, Ray's errors and warnings included, passes through."""

    def __init__(self, stream):
        self.stream, self.dropped = stream, False

    def write(self, text: str) -> int:
        if any(n in text for n in RAY_NOTICES):
            self.dropped = True  # print() writes the line, then its end on its own
            return len(text)
        if self.dropped and text == "\n":
            self.dropped = False
            return len(text)
        self.dropped = False
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


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

