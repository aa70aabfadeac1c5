"""SIGINT and SIGTERM as one clean stop: the first raises KeyboardInterrupt, later ones are ignored.

Ignoring the later ones lets the cleanup (telling Optuna that the running trial failed) finish when
a user presses Ctrl-C twice or a supervisor sends SIGTERM to every process. Inside
`deferred_interrupts()` (asking for or telling a trial) a signal is held back and raised on exit,
so a trial is never left half-created or half-told. A KeyboardInterrupt raised while a finalizer
runs is swallowed by Python (which would print it as "Exception ignored in ..."), so the loops also
call `raise_if_interrupted()` at safe points, and the swallowed one is not printed. A process that
ends after the block (`until_exit`) keeps ignoring the signals until it has exited: after the block
a Ctrl-C would otherwise interrupt its exit cleanup (atexit) or, late in the interpreter's
shutdown, kill it by SIGINT instead of letting it exit with its status.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

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
def interrupts_stop_cleanly(*, until_exit: bool = False) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt once (main thread only; else a no-op).

    `until_exit`: the process exits right after the block (a command's or a worker's whole run), so the signals
    stay ignored after it instead of getting their previous handlers back.
    """
    if _State.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    previous_hook = sys.unraisablehook
    _State.installed, _State.requested, _State.pending = True, False, False
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    sys.unraisablehook = lambda unraisable: _unraisable(unraisable, previous_hook)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # SIG_IGN, unlike a Python handler, also holds while the interpreter shuts down
            signal.signal(signum, signal.SIG_IGN if until_exit else handler)
        sys.unraisablehook = previous_hook
        _State.installed, _State.requested, _State.pending = False, False, False


def _unraisable(unraisable: sys.UnraisableHookArgs, previous_hook: Callable[[sys.UnraisableHookArgs], Any]) -> None:
    """sys.unraisablehook within `interrupts_stop_cleanly`: the handler's KeyboardInterrupt, swallowed because it
    landed in a finalizer, is not printed (the stop is recorded and raised at the next safe point)."""
    if not (_State.requested and issubclass(unraisable.exc_type, KeyboardInterrupt)):
        previous_hook(unraisable)


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
