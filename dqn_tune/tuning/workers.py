"""Run a picklable function in several worker processes and bring back results and failures.

Used by `dqn-tune --workers W` (each process runs trials of one study) and by the grid ablation
(each process runs cells). Workers are started with the "spawn" method (no inherited threads or
database connections) and handle SIGINT/SIGTERM as a clean stop. A worker's exception is re-raised
in the parent once every worker has ended: a DQNTuneError as itself, anything else as WorkerError
with the worker's traceback; a worker killed by a signal is a WorkerError naming the signal.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from dqn_tune.errors import DQNTuneError
from dqn_tune.tuning.interrupts import interrupts_stop_cleanly

R = TypeVar("R")


class WorkerError(RuntimeError):
    """A worker process raised an unexpected exception or was killed."""


def run_in_processes(target: Callable[..., R], arguments: Sequence[tuple[Any, ...]], *,
                     poll: Callable[[], None] | None = None, poll_interval_s: float = 1.0) -> list[R]:
    """Call `target(*args)` in one process per entry of `arguments`; return their results in order.

    `poll` is called about every `poll_interval_s` while workers run (e.g. to refresh a progress
    bar). On KeyboardInterrupt in the parent every live worker gets SIGTERM and is waited for; then
    KeyboardInterrupt is re-raised (also when a worker was interrupted on its own).
    """
    context = multiprocessing.get_context("spawn")
    workers = []
    for index, args in enumerate(arguments):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(target, args, sender), name=f"dqn-tune-worker-{index}")
        process.start()
        sender.close()
        workers.append((process, receiver))
    outcomes: dict[int, tuple[str, Any]] = {}
    try:
        _collect(workers, outcomes, poll, poll_interval_s)
    except KeyboardInterrupt:
        for process, _ in workers:
            if process.is_alive():
                process.terminate()
        _collect(workers, outcomes, None, poll_interval_s)
        raise
    for process, _ in workers:
        process.join()
    return _results(workers, outcomes)


def _collect(workers: list[tuple[Any, Connection]], outcomes: dict[int, tuple[str, Any]],
             poll: Callable[[], None] | None, poll_interval_s: float) -> None:
    """Read each worker's outcome message (or EOF when it died without one) until all are in."""
    open_receivers = {receiver: index for index, (_, receiver) in enumerate(workers) if index not in outcomes}
    while open_receivers:
        for receiver in wait(list(open_receivers), timeout=poll_interval_s):
            index = open_receivers.pop(receiver)  # type: ignore[call-overload]
            try:
                outcomes[index] = receiver.recv()  # type: ignore[union-attr]
            except EOFError:
                outcomes[index] = ("died", None)
        if poll is not None:
            poll()


def _results(workers: list[tuple[Any, Connection]], outcomes: dict[int, tuple[str, Any]]) -> list[Any]:
    """The results in order, or the first failure raised."""
    if any(kind == "interrupted" for kind, _ in outcomes.values()):
        raise KeyboardInterrupt
    for index, (process, _) in enumerate(workers):
        kind, payload = outcomes[index]
        if kind == "error":
            error, trace = payload
            if isinstance(error, DQNTuneError):
                raise error
            raise WorkerError(f"worker {index} (pid {process.pid}) failed:\n{trace}")
        if kind == "died":
            code = process.exitcode or 0
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            raise WorkerError(f"worker {index} (pid {process.pid}) {how}")
    return [outcomes[index][1] for index in range(len(workers))]


def _child(target: Callable[..., Any], args: tuple[Any, ...], sender: Connection) -> None:
    """Worker process body: run the target and send ("ok", result), ("error", ...) or ("interrupted", None)."""
    with interrupts_stop_cleanly():
        try:
            sender.send(("ok", target(*args)))
        except KeyboardInterrupt:
            sender.send(("interrupted", None))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            sender.send(("error", (_picklable(exc), traceback.format_exc())))
    sender.close()


def _picklable(exc: Exception) -> Exception | None:
    """`exc` if it survives pickling (custom exception signatures may not), else None."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure means "send the traceback only"
        return None
    return exc
