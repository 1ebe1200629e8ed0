"""How a sweep hears an operator's stop: SIGTERM (``timeout``, systemd, Kubernetes, ``ray job stop``)
takes the path of Ctrl-C, so both save the sweep's state."""

from __future__ import annotations

import os
import signal
import threading


class StopSignals:
    """SIGTERM takes the path of SIGINT (Ctrl-C), remembering which signal came.

    ``timeout``, systemd, Kubernetes and ``ray job stop`` send SIGTERM. During ``Tuner.fit()`` Tune's
    own SIGINT handler stops the experiment and saves its state (fit then returns, and run_stage
    raises Interrupted); outside it the SIGINT handler raises KeyboardInterrupt. So the SIGTERM
    handler calls whichever SIGINT handler is in force. It must be installed after ``ray.init``,
    which replaces the SIGTERM handler with its own (exit at once, no state saved).
    """

    def __init__(self, budget_s: float | None = None):
        self.received: int | None = None
        self.previous = None
        self.budget_spent = False
        self.timer = threading.Timer(budget_s, self.spend_budget) if budget_s else None

    def __enter__(self) -> StopSignals:
        self.previous = signal.signal(signal.SIGTERM, self.on_sigterm)
        if self.timer:
            self.timer.daemon = True
            self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.timer:
            self.timer.cancel()
        signal.signal(signal.SIGTERM, self.previous)

    def spend_budget(self) -> None:
        """The time budget is over: stop as an operator's SIGTERM would (the handler runs in the main
        thread, where Tune's SIGINT handler saves the experiment)."""
        self.budget_spent = True
        os.kill(os.getpid(), signal.SIGTERM)

    def on_sigterm(self, signum, frame) -> None:
        self.received = signum
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIGINT ignored (a background job of a script) or default
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    def exit_status(self) -> int:
        """128 + the signal, as a shell reports it: 130 for SIGINT, 143 for SIGTERM; 0 when the sweep's
        own time budget stopped it (what was asked for)."""
        if self.budget_spent:
            return 0
        return 128 + (self.received or signal.SIGINT)

