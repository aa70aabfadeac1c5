"""A crash-safe replacement for `study.optimize`: ask (exclusively), run with a heartbeat, tell.

Differences from `study.optimize`: trials come from `ask_trial` (no trial runs twice, even on
SQLite with queued retries), `total_trials` caps the study across processes and machines, a quota
is shared by the worker processes of one command, a DQNTuneError fails only its trial (reason
stored), and an interrupt fails the running trial before it propagates.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.errors import DQNTuneError
from dqn_tune.tuning import records
from dqn_tune.tuning.interrupts import deferred_interrupts, raise_if_interrupted
from dqn_tune.tuning.optuna_internals import (
    frozen,
    heartbeat,
    optimize_loop,
    stop_requested,
)
from dqn_tune.tuning.trial_queue import ask_trial

LOGGER = logging.getLogger(__name__)
INTERRUPTED = "interrupted by SIGINT or SIGTERM"

Objective = Callable[[optuna.Trial], float]
TrialCallback = Callable[[FrozenTrial], None]


class TrialQuota:
    """How many trials one command may still start, shared by its worker processes."""

    def __init__(self, trials: int | None, *, timeout_s: float | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._left = context.Value("q", -1 if trials is None else trials)
        self._finished = context.Value("q", 0)
        self._deadline = None if timeout_s is None else time.time() + timeout_s  # wall clock: shared by processes
        self._timed_out = context.Value("b", 0)

    def take(self) -> bool:
        """Claim one trial; False when the quota is spent (never, for an unlimited quota) or the deadline passed."""
        with self._left.get_lock():
            if self._left.value == 0:
                return False
            if self._deadline is not None and time.time() >= self._deadline:
                self._timed_out.value = 1
                return False
            if self._left.value > 0:
                self._left.value -= 1
            return True

    def give_back(self) -> None:
        """Return one claimed trial that did not finish (its worker died; its retry is queued) for another to run."""
        with self._left.get_lock():
            if self._left.value >= 0:
                self._left.value += 1

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


def run_trials(study: optuna.Study, objective: Objective, quota: TrialQuota, *, total_trials: int | None = None,
               on_trial: TrialCallback | None = None) -> None:
    """Run trials of `study` until the quota is spent, the study holds `total_trials`, or the sampler stops it.

    An exception other than DQNTuneError fails its trial and is re-raised; KeyboardInterrupt too.
    """
    with optimize_loop(study):  # as in study.optimize: GridSampler may stop the study when its grid is done
        while not stop_requested(study) and quota.take():
            raise_if_interrupted()
            finished = _run_one(study, objective, total_trials)
            if finished is None:
                break
            quota.finish()
            if on_trial is not None:
                on_trial(finished)


def _run_one(study: optuna.Study, objective: Objective, total_trials: int | None) -> FrozenTrial | None:
    trial = None
    told = False
    try:
        with deferred_interrupts():
            trial = ask_trial(study, total_trials=total_trials)
        if trial is None:
            return None
        with heartbeat(study, trial):
            state, value, error = _call(objective, trial)
        with deferred_interrupts():
            _tell(study, trial, value, state)
            told = True
    except KeyboardInterrupt:
        if trial is not None and not told:
            with deferred_interrupts():
                if not frozen(study, trial).state.is_finished():
                    trial.set_user_attr(records.FAIL_REASON, INTERRUPTED)
                _tell(study, trial, None, TrialState.FAIL)
        raise
    if error is not None:
        raise error
    return frozen(study, trial)


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None, state: TrialState | None) -> None:
    """Finish the trial, unless another process already failed it (its heartbeat went stale meanwhile)."""
    if frozen(study, trial).state.is_finished():
        LOGGER.warning("trial %d was failed by another worker (no heartbeat for the grace period); "
                       "it is retried, this result is dropped", trial.number)
    study.tell(trial, value, state=state, skip_if_finished=True)


def _call(objective: Objective, trial: optuna.Trial) -> tuple[TrialState | None, float | None, Exception | None]:
    """(state for tell, value, exception to re-raise) of running the objective on `trial`."""
    try:
        return None, objective(trial), None
    except optuna.TrialPruned:
        return TrialState.PRUNED, None, None
    except UpdateFinishedTrialError:  # failed by another process's stale-trial check; _tell says so
        return TrialState.FAIL, None, None
    except DQNTuneError as exc:
        LOGGER.warning("trial %d failed: %s", trial.number, exc)
        trial.set_user_attr(records.FAIL_REASON, str(exc))
        return TrialState.FAIL, None, None
    except Exception as exc:
        trial.set_user_attr(records.FAIL_REASON, f"{type(exc).__name__}: {exc}")
        return TrialState.FAIL, None, exc
