"""SIGINT and SIGTERM as one clean stop: the first raises KeyboardInterrupt, later ones are ignored.

Ignoring the later ones lets the cleanup (telling Optuna that the running trial failed) finish when
a user presses Ctrl-C twice or a supervisor sends SIGTERM to every process. Inside
`deferred_interrupts()` (asking for or telling a trial) a signal is held back and raised on exit,
so a trial is never left half-created or half-told. A KeyboardInterrupt raised while a finalizer
runs is swallowed by Python, so the loops also call `raise_if_interrupted()` at safe points.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    installed = False
    requested = False
    deferring = 0
    pending = False


def _handle(signum: int, frame: FrameType | None) -> None:
    if _State.requested:
        return
    _State.requested = True
    if _State.deferring:
        _State.pending = True
        return
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a stop signal arrived: called at safe points (between trials, at each
    evaluation) because the handler's own KeyboardInterrupt is lost when it lands in a finalizer."""
    if _State.requested:
        raise KeyboardInterrupt


@contextmanager
def interrupts_stop_cleanly() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt once (main thread only; else a no-op)."""
    if _State.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _State.installed, _State.requested, _State.pending = True, False, False
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _State.installed, _State.requested, _State.pending = False, False, False


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM inside the block; one that arrived raises KeyboardInterrupt on exit."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        if not _State.deferring and _State.pending:
            _State.pending = False
            raise KeyboardInterrupt
