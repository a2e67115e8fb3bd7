"""Ctrl-C and ``kill`` during training: finish the step, write the checkpoint, stop cleanly.

A training run asked to stop by SIGINT (Ctrl-C) or SIGTERM (``kill``, a scheduler's pre-emption, ``torchrun``
passing one on) must not lose the steps since its last periodic checkpoint. Inside :func:`stop_on_signals` such a
signal only asks the trainer to stop (``trainer.stop_requested``): the step in progress finishes, the trainer's
loop ends, its hooks run their ``after_train`` (the checkpoint hook writes ``last.safetensors`` at the step
reached; the evaluation hook skips the final evaluation of an interrupted run), and the caller reports it. A
second Ctrl-C while that happens raises ``KeyboardInterrupt`` at once, for a user who really wants out.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ubernet.errors import UbernetError

#: signal number -> the exit status a shell reports for a process it ended (128 + number)
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(UbernetError):
    """Training stopped on a signal after writing its checkpoint; ``exit_status`` is the shell's 128 + signal."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@contextmanager
def stop_on_signals(trainer: Any) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set ``trainer.stop_requested`` and ``trainer.interrupted`` (the signal)
    instead of ending the process. Handlers can only be installed from the main thread; elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and getattr(trainer, "interrupted", None) == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: out now
        trainer.interrupted = signal.Signals(signum)
        trainer.stop_requested = True

    previous = {s: signal.signal(s, ask_to_stop) for s in EXIT_STATUS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
