"""A crash-safe replacement for `study.optimize`: ask (exclusively), run with a heartbeat, tell.

Differences from `study.optimize`: trials come from `ask_trials` (no trial runs twice, even on
SQLite with queued retries), `total_trials` caps the study across processes and machines, a quota
is shared by the worker processes of one command, a DQNTuneError fails only its trial (reason
stored), an interrupt fails the running trial before it propagates, and a storage fault (disk full,
a damaged database) fails the running trials as far as the storage still takes writes and stops
the worker with a one-line StorageError. A `BatchObjective` runs
several queued trials at once (validation: one config's seeds as one batched training); each keeps
its own heartbeat and is told on its own.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.errors import DQNTuneError, StorageError
from dqn_tune.runner import attributes
from dqn_tune.runner.interrupts import deferred_interrupts, raise_if_interrupted
from dqn_tune.runner.optuna_internals import (
    frozen,
    heartbeat,
    optimize_loop,
    stop_requested,
    storage_url,
)
from dqn_tune.runner.storage_errors import is_storage_fault, storage_error
from dqn_tune.runner.trial_queue import ask_trials

LOGGER = logging.getLogger(__name__)
INTERRUPTED = "interrupted by SIGINT or SIGTERM"

Objective = Callable[[optuna.Trial], float]
TrialCallback = Callable[[FrozenTrial], None]


@dataclass(frozen=True, slots=True)
class BatchObjective:
    """An objective over several trials at once: `run(trials)` returns one value per trial, None for a trial it
    pruned. A batch is a queued trial and the queued trials right behind it with the same `key`, at most
    `limit` (`ask_trials`); an exception fails every trial of the batch, as it fails one trial."""

    run: Callable[[Sequence[optuna.Trial]], list[float | None]]
    key: Callable[[FrozenTrial], Hashable]
    limit: int


class Quota(Protocol):
    """How many trials one command may still start, shared by its workers (an executor provides it)."""

    def take(self, count: int = 1) -> int:
        """Claim up to `count` trials; how many were granted (0 when the quota is spent or the deadline passed)."""
        ...

    def give_back(self, count: int = 1) -> None:
        """Return claimed trials that did not run."""
        ...

    def finish(self) -> None:
        """Count one finished trial."""
        ...

    @property
    def timed_out(self) -> bool:
        """Whether a trial was refused because the deadline had passed."""
        ...

    @property
    def finished(self) -> int:
        """Trials finished so far by all the workers sharing this quota."""
        ...


class TrialQuota:
    """A Quota shared by the processes of this machine (shared memory; passed to processes as they start)."""

    def __init__(self, trials: int | None, *, timeout_s: float | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._left = context.Value("q", -1 if trials is None else trials)
        self._finished = context.Value("q", 0)
        self._deadline = None if timeout_s is None else time.time() + timeout_s  # wall clock: shared by processes
        self._timed_out = context.Value("b", 0)

    def take(self, count: int = 1) -> int:
        """Claim up to `count` trials; how many were granted (0 when the quota is spent or the deadline passed;
        all of them for an unlimited quota)."""
        with self._left.get_lock():
            if self._left.value == 0:
                return 0
            if self._deadline is not None and time.time() >= self._deadline:
                self._timed_out.value = 1
                return 0
            if self._left.value < 0:
                return count
            granted: int = min(count, self._left.value)
            self._left.value -= granted
            return granted

    def give_back(self, count: int = 1) -> None:
        """Return claimed trials that did not run (a worker died and their retries are queued, or a batch came
        out smaller than claimed) for others to run."""
        with self._left.get_lock():
            if self._left.value >= 0:
                self._left.value += count

    def finish(self) -> None:
        """Count one finished trial."""
        with self._finished.get_lock():
            self._finished.value += 1

    @property
    def timed_out(self) -> bool:
        """Whether a trial was refused because the deadline had passed (running ones finished)."""
        return bool(self._timed_out.value)

    @property
    def finished(self) -> int:
        """Trials finished so far by all processes sharing this quota."""
        return int(self._finished.value)


def run_trials(
    study: optuna.Study,
    objective: Objective | BatchObjective,
    quota: Quota,
    *,
    total_trials: int | None = None,
    on_trial: TrialCallback | None = None,
) -> None:
    """Run trials of `study` until the quota is spent, the study holds `total_trials`, or the sampler stops it.

    An exception other than DQNTuneError fails its trial (its batch) and is re-raised; KeyboardInterrupt too.
    """
    batch = (
        objective
        if isinstance(objective, BatchObjective)
        else BatchObjective(lambda trials: [objective(trials[0])], lambda _trial: None, 1)
    )
    with optimize_loop(study):  # as in study.optimize: GridSampler may stop the study when its grid is done
        while not stop_requested(study) and (granted := quota.take(batch.limit)):
            raise_if_interrupted()
            finished = _run_batch(study, batch, granted, total_trials)
            quota.give_back(granted - len(finished))
            if not finished:
                break
            for trial in finished:
                quota.finish()
                if on_trial is not None:
                    on_trial(trial)


def _run_batch(study: optuna.Study, batch: BatchObjective, limit: int, total_trials: int | None) -> list[FrozenTrial]:
    trials: list[optuna.Trial] = []
    told = 0
    try:
        with deferred_interrupts():
            trials = ask_trials(study, total_trials=total_trials, limit=limit, key=batch.key)
        if not trials:
            return []
        with ExitStack() as beats:
            for trial in trials:
                beats.enter_context(heartbeat(study, trial))
            states, values, error = _call(batch.run, trials)
        with deferred_interrupts():
            for trial, state, value in zip(trials, states, values, strict=True):
                _tell(study, trial, value, state)
                told += 1
    except KeyboardInterrupt:
        with deferred_interrupts():
            for trial in trials[told:]:
                if not frozen(study, trial).state.is_finished():
                    trial.set_user_attr(attributes.FAIL_REASON, INTERRUPTED)
                _tell(study, trial, None, TrialState.FAIL)
        raise
    except Exception as exc:
        fault = storage_error(exc, url=storage_url(study))
        if fault is None:
            raise
        with deferred_interrupts():
            raise _stop_for_fault(study, trials[told:], fault) from exc
    if error is not None:
        raise error
    return [frozen(study, trial) for trial in trials]


def _stop_for_fault(study: optuna.Study, trials: Sequence[optuna.Trial], error: StorageError) -> StorageError:
    """The StorageError that stops this worker after a storage fault (disk full, a damaged database), once `trials`
    are failed as far as the storage still takes writes (this process is alive: none should stay RUNNING), saying
    what became of them."""
    failed = {trial.number: _fail_if_possible(study, trial, str(error)) for trial in trials}
    fates = [str(error)]
    if done := [number for number, ok in failed.items() if ok]:
        fates.append(f"trial {_numbers(done)} marked failed")
    if left := [number for number, ok in failed.items() if not ok]:
        fates.append(
            f"trial {_numbers(left)} left RUNNING (the storage took no more writes): a later command fails "
            "and retries it once its heartbeat is older than the grace period"
        )
    return StorageError("; ".join(fates))


def _fail_if_possible(study: optuna.Study, trial: optuna.Trial, reason: str) -> bool:
    """Fail `trial` with `reason` if the storage still takes the writes; whether it took the failed state."""
    try:  # the reason on its own: a new row, which on a full disk may not fit where the state changed in place does
        trial.set_user_attr(attributes.FAIL_REASON, reason)
    except UpdateFinishedTrialError:  # failed meanwhile by another process's stale-trial check
        return True
    except Exception as exc:
        if not is_storage_fault(exc):
            raise
    try:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:
        if not is_storage_fault(exc):
            raise
        return False
    return True


def _numbers(numbers: Sequence[int]) -> str:
    return ", ".join(map(str, numbers))


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None, state: TrialState | None) -> None:
    """Finish the trial, unless another process already failed it (its heartbeat went stale meanwhile)."""
    if frozen(study, trial).state.is_finished():
        LOGGER.warning(
            "trial %d was failed by another worker (no heartbeat for the grace period); "
            "it is retried, this result is dropped",
            trial.number,
        )
    study.tell(trial, value, state=state, skip_if_finished=True)


def _call(
    run: Callable[[Sequence[optuna.Trial]], list[float | None]], trials: Sequence[optuna.Trial]
) -> tuple[list[TrialState | None], list[float | None], Exception | None]:
    """(states for tell, values, exception to re-raise) of running the objective on `trials`."""

    def every(state: TrialState) -> list[TrialState | None]:
        return [state] * len(trials)

    try:
        values = run(trials)
        return [TrialState.PRUNED if value is None else None for value in values], values, None
    except optuna.TrialPruned:
        return every(TrialState.PRUNED), [None] * len(trials), None
    except UpdateFinishedTrialError:  # failed by another process's stale-trial check; _tell says so
        return every(TrialState.FAIL), [None] * len(trials), None
    except Exception as exc:
        if is_storage_fault(exc):
            raise  # the storage itself failed (disk full...): `_run_batch` fails the trials if it can, and stops
        if not isinstance(exc, DQNTuneError):
            for trial in trials:
                trial.set_user_attr(attributes.FAIL_REASON, f"{type(exc).__name__}: {exc}")
            return every(TrialState.FAIL), [None] * len(trials), exc
        for trial in trials:
            LOGGER.warning("trial %d failed: %s", trial.number, exc)
            trial.set_user_attr(attributes.FAIL_REASON, str(exc))
        return every(TrialState.FAIL), [None] * len(trials), None
