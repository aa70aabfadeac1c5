"""Run a picklable function in several worker processes and bring back results and failures.

Used by `dqn-tune --workers W` (each process runs trials of one study) and by the grid ablation
(each process runs cells). Workers are started with the "spawn" method (no inherited threads or
database connections) and handle SIGINT/SIGTERM as a clean stop. A worker's exception is re-raised
in the parent once every worker has ended: a DQNTuneError as itself, anything else as WorkerError
with the worker's traceback; a worker killed by a signal is a WorkerError naming the signal, unless
the caller handles deaths itself (`on_death`: e.g. fail the dead worker's trial and start a
replacement). A worker stops (SIGTERM, a clean stop) when its parent dies, even by SIGKILL.

`LocalProcesses` is the study runner's default executor (executor.py) on top of it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any, TypeVar, cast

from dqn_tune.errors import DQNTuneError
from dqn_tune.runner.executor import Death
from dqn_tune.runner.executor import OnDeath as DeathHandler
from dqn_tune.runner.interrupts import interrupts_stop_cleanly
from dqn_tune.runner.trial_loop import TrialQuota
from dqn_tune.runner.trial_queue import process_name

R = TypeVar("R")
PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal a process gets when its parent dies."""
OnDeath = Callable[[int, int, str], "tuple[Any, ...] | None"]
"""on_death(index, pid, how) for a worker that died without reporting, e.g. how = "was killed by SIGKILL";
it returns the arguments of a replacement worker, or None to start none."""


class WorkerError(RuntimeError):
    """A worker process raised an unexpected exception or was killed."""


def run_in_processes(
    target: Callable[..., R],
    arguments: Sequence[tuple[Any, ...]],
    *,
    poll: Callable[[], None] | None = None,
    poll_interval_s: float = 1.0,
    on_death: OnDeath | None = None,
) -> list[R | None]:
    """Call `target(*args)` in one process per entry of `arguments`; return their results in order.

    `poll` is called about every `poll_interval_s` while workers run (e.g. to refresh a progress
    bar). A worker that dies without reporting (SIGKILL, OOM killer) raises WorkerError at the end;
    with `on_death`, it is the caller's to report instead: `on_death` is called at once, its result
    (if not None) starts a replacement worker, and the dead worker's result is None. On
    KeyboardInterrupt in the parent every live worker gets SIGTERM and is waited for (no replacements);
    then KeyboardInterrupt is re-raised (also when a worker was interrupted on its own).
    """
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[Any, Connection]] = []

    def start(args: tuple[Any, ...]) -> Connection:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_child, args=(target, args, sender, os.getpid()), name=f"dqn-tune-worker-{len(workers)}"
        )
        with _children_ignore_sigint():
            process.start()
        sender.close()
        workers.append((process, receiver))
        return receiver

    for args in arguments:
        start(args)
    outcomes: dict[int, tuple[str, Any]] = {}
    try:
        _collect(workers, outcomes, poll, poll_interval_s, on_death, start)
    except KeyboardInterrupt:
        for process, _ in workers:
            if process.is_alive():
                process.terminate()
        _collect(workers, outcomes, None, poll_interval_s, on_death, None, stopping=True)
        raise
    for process, _ in workers:
        process.join()
    return _results(workers, outcomes)


def _collect(
    workers: list[tuple[Any, Connection]],
    outcomes: dict[int, tuple[str, Any]],
    poll: Callable[[], None] | None,
    poll_interval_s: float,
    on_death: OnDeath | None,
    start: Callable[[tuple[Any, ...]], Connection] | None,
    *,
    stopping: bool = False,
) -> None:
    """Read each worker's outcome message (or EOF when it died without one) until all are in; a death
    goes to `on_death` at once, and its replacement (if any) is started with `start` (None: never).
    `stopping`: the parent sent SIGTERM to every worker, so one that died of it before it could stop cleanly
    (still importing: it held no trial) was stopped, not lost."""
    open_receivers = {receiver: index for index, (_, receiver) in enumerate(workers) if index not in outcomes}
    while open_receivers:
        for receiver in wait(list(open_receivers), timeout=poll_interval_s):
            index = open_receivers.pop(receiver)  # type: ignore[call-overload]
            try:
                outcomes[index] = cast(Connection, receiver).recv()
            except EOFError:  # it died without a word
                process = workers[index][0]
                process.join(timeout=10)
                if stopping and process.exitcode == -signal.SIGTERM:
                    outcomes[index] = ("interrupted", None)
                    continue
                outcomes[index] = ("died" if on_death is None else "handled", None)
                if on_death is None:
                    continue
                replacement = on_death(index, process.pid, _how_it_ended(process))
                if replacement is not None and start is not None:
                    new_receiver = start(replacement)
                    open_receivers[new_receiver] = len(workers) - 1
        if poll is not None:
            poll()


def _how_it_ended(process: Any) -> str:
    """ "was killed by SIGKILL" or "exited with status N" for an ended worker process."""
    code = process.exitcode or 0
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


def _results(workers: list[tuple[Any, Connection]], outcomes: dict[int, tuple[str, Any]]) -> list[Any]:
    """The results in order (None for a worker whose death `on_death` handled), or the first failure raised."""
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
            raise WorkerError(f"worker {index} (pid {process.pid}) {_how_it_ended(process)}")
    return [outcomes[index][1] for index in range(len(workers))]


def _child(target: Callable[..., Any], args: tuple[Any, ...], sender: Connection, parent: int) -> None:
    """Worker process body: run the target and send ("ok", result), ("error", ...) or ("interrupted", None).

    The worker stops cleanly when `parent` dies: already dead (the worker was adopted) or later (SIGTERM).
    """
    with interrupts_stop_cleanly(until_exit=True):
        try:
            _stop_with_parent(parent)
            outcome: tuple[str, Any] = ("ok", target(*args))
        except KeyboardInterrupt:
            outcome = ("interrupted", None)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            outcome = ("error", (_picklable(exc), traceback.format_exc()))
        with suppress(OSError):  # the parent is gone: nobody to report to
            sender.send(outcome)
        sender.close()


@contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started within the block begin with SIGINT ignored, until `_child` installs the clean-stop handler.

    A terminal's Ctrl-C reaches every process of the group: a worker still importing (seconds, under spawn) would die
    with a KeyboardInterrupt traceback. Ignoring it there loses nothing, since the parent gets the same Ctrl-C and
    sends SIGTERM to every worker (`run_in_processes`). The disposition is inherited across exec, a handler is not;
    a Ctrl-C that arrives in the instant this process ignores it is lost (the next one stops the command).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_with_parent(parent: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies; KeyboardInterrupt if `parent` is gone already.

    Elsewhere (no prctl) only the check runs: a worker orphaned later runs on until its quota is spent.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:
        raise KeyboardInterrupt


def _picklable(exc: Exception) -> Exception | None:
    """`exc` if it survives pickling (custom exception signatures may not), else None."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure means "send the traceback only"
        return None
    return exc


class LocalProcesses:
    """The executor of worker processes on this machine (`run_in_processes`), sharing a TrialQuota."""

    def __enter__(self) -> LocalProcesses:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        pass

    def quota(self, trials: int | None, *, timeout_s: float | None) -> TrialQuota:
        return TrialQuota(trials, timeout_s=timeout_s)

    def run(
        self,
        work: Callable[..., None],
        arguments: Sequence[tuple[Any, ...]],
        *,
        poll: Callable[[], None],
        on_death: DeathHandler,
    ) -> None:
        def died(index: int, pid: int, how: str) -> tuple[Any, ...] | None:
            return on_death(Death(index, process_name(pid), f"pid {pid}", how))

        run_in_processes(work, arguments, poll=poll, on_death=died)
