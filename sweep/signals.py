"""How a sweep hears an operator's stop: SIGTERM (``timeout``, systemd, Kubernetes, ``ray job stop``)
takes the path of Ctrl-C, so both save the sweep's state."""

from __future__ import annotations

import signal


class StopSignals:
    """SIGTERM takes the path of SIGINT (Ctrl-C), remembering which signal came.

    ``timeout``, systemd, Kubernetes and ``ray job stop`` send SIGTERM. During ``Tuner.fit()`` Tune's
    own SIGINT handler stops the experiment and saves its state (fit then returns, and run_stage
    raises Interrupted); outside it the SIGINT handler raises KeyboardInterrupt. So the SIGTERM
    handler calls whichever SIGINT handler is in force. It must be installed after ``ray.init``,
    which replaces the SIGTERM handler with its own (exit at once, no state saved).
    """

    def __init__(self):
        self.received: int | None = None
        self.previous = None

    def __enter__(self) -> StopSignals:
        self.previous = signal.signal(signal.SIGTERM, self.on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self.previous)

    def on_sigterm(self, signum, frame) -> None:
        self.received = signum
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIGINT ignored (a background job of a script) or default
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    def exit_status(self) -> int:
        """128 + the signal, as a shell reports it: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.received or signal.SIGINT)

