"""Asking for the next trial so that no two processes ever get the same one, and failing a dead process's trials.

Optuna 5.0 on SQLite can hand one queued (WAITING) trial to two processes: SQLite ignores
`SELECT ... FOR UPDATE`, so two workers both see it WAITING and both run it; the second then
crashes with "Cannot tell a COMPLETE trial" (optuna issues 4621, 4002). Retries of dead trials and
GridSampler cells are exactly such trials. `ask_trial` serialises the whole "fail stale trials,
pop or create a trial, pick its grid cell" step with the study lock of the storage's coordinator,
shared by every process of the study: a file lock beside the SQLite file, a PostgreSQL advisory lock
(which also makes `total_trials` exact across machines), or the storage proxy's lease of it. Other
backends rely on their own row locks.

Each trial asked records the process that runs it (attributes.WORKER), so that a parent which sees
its worker die can fail that worker's trial and queue its retry at once (`fail_trials_of`)
instead of leaving it RUNNING until the heartbeat grace period has passed.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Hashable

import optuna
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.runner.attributes import FAIL_REASON, RETRY_HISTORY, RETRY_OF, WORKER
from dqn_tune.runner.optuna_internals import (
    coordinator,
    fail_and_retry,
    fail_stale_trials,
    storage,
    trial_id,
)


def process_name(pid: int | None = None) -> str:
    """How attributes.WORKER names the process `pid` of this machine (default: this process)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards a study's total: all of them except retries of trials whose worker died."""
    return sum(RETRY_OF not in trial.system_attrs for trial in study.get_trials(deepcopy=False))


def ask_trial(study: optuna.Study, *, total_trials: int | None = None) -> optuna.Trial | None:
    """The study's next trial, given to this process only; None once the study holds `total_trials`.

    Under the study lock: fail trials whose heartbeat went stale (queuing their retries), then pop a
    queued trial or create one, record which process runs it and its first heartbeat (so that it
    cannot stay RUNNING forever if this process dies before its heartbeat thread starts).
    """
    trials = ask_trials(study, total_trials=total_trials)
    return trials[0] if trials else None


def ask_trials(
    study: optuna.Study,
    *,
    total_trials: int | None = None,
    limit: int = 1,
    key: Callable[[FrozenTrial], Hashable] | None = None,
) -> list[optuna.Trial]:
    """`ask_trial`, then, under the same lock, the queued trials right behind it in the queue whose `key` equals
    the first one's, up to `limit` trials in all (a batch its caller runs together). [] as `ask_trial`'s None."""
    with coordinator(study).lock(study.study_name):
        fail_stale_trials(study)
        if (
            total_trials is not None
            and counted_trials(study) >= total_trials
            and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        ):
            return []
        trials = [_take(study)]
        while key is not None and len(trials) < limit:
            queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not queued or key(queued[0]) != key(storage(study).get_trial(trial_id(trials[0]))):
                break
            trials.append(_take(study))  # pops queued[0]: the oldest waiting trial, and the lock is ours
        return trials


def _take(study: optuna.Study) -> optuna.Trial:
    """Pop a queued trial or create one; record this process as its worker, and its first heartbeat."""
    trial = study.ask()
    storage(study).set_trial_system_attr(trial_id(trial), WORKER, process_name())
    beats = coordinator(study)
    if beats.get_heartbeat_interval() is not None:
        beats.record_heartbeat(trial_id(trial))
    return trial


def queue_retry(study: optuna.Study, failed: FrozenTrial) -> None:
    """Queue a retry of the finished trial `failed`, as the heartbeat's stale-trial callback does: its params, user
    attributes but the fail reason, and system attributes, with the trial it retries added to its retry history."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs={name: value for name, value in failed.user_attrs.items() if name != FAIL_REASON},
            system_attrs={
                **failed.system_attrs,
                RETRY_OF: failed.system_attrs.get(RETRY_OF, failed.number),
                RETRY_HISTORY: [*failed.system_attrs.get(RETRY_HISTORY, []), failed.number],
            },
        )
    )


def retried_trials(study: optuna.Study) -> set[int]:
    """Numbers of the trials that some trial of the study retries."""
    return {
        int(number)
        for trial in study.get_trials(deepcopy=False)
        for number in trial.system_attrs.get(RETRY_HISTORY, [])
    }


def first_try(trial: optuna.Trial) -> int:
    """The number of the trial that `trial` (a retry, or a first try) repeats: the first of its retry chain."""
    return int(storage(trial.study).get_trial(trial_id(trial)).system_attrs.get(RETRY_OF, trial.number))


def predecessor(trial: optuna.Trial) -> FrozenTrial | None:
    """The trial that `trial` retries (the last of its retry history), as stored now; None for a first try."""
    stored = storage(trial.study)
    attributes = stored.get_trial(trial_id(trial)).system_attrs
    history = attributes.get(RETRY_HISTORY) or ([attributes[RETRY_OF]] if RETRY_OF in attributes else [])
    if not history:
        return None
    study_id = stored.get_study_id_from_name(trial.study.study_name)
    return stored.get_trial(stored.get_trial_id_from_study_id_trial_number(study_id, int(history[-1])))


def fail_trials_of(study: optuna.Study, process: str, reason: str) -> list[tuple[int, int | None]]:
    """Fail the RUNNING trials of the dead `process` (a `process_name`) now, with `reason` as their fail reason,
    and queue their retries as the heartbeat's stale-trial callback would (at most MAX_RETRY per trial; retries
    do not count towards a total). Returns (failed trial number, its retry's number or None if not retried)."""
    stored = storage(study)
    with coordinator(study).lock(study.study_name):
        study_id = stored.get_study_id_from_name(study.study_name)
        numbers = {
            stored.get_trial_id_from_study_id_trial_number(study_id, trial.number): trial.number
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if trial.system_attrs.get(WORKER) == process
        }
        failed = fail_and_retry(study, dict.fromkeys(numbers, reason))
        return [(numbers[stored_id], _retry_number(study, numbers[stored_id])) for stored_id in failed]


def retry_state(study: optuna.Study, number: int) -> TrialState:
    """The state of trial `number` (e.g. a retry queued by `fail_trials_of`) as stored now."""
    return next(trial.state for trial in study.get_trials(deepcopy=False) if trial.number == number)


def _retry_number(study: optuna.Study, number: int) -> int | None:
    """The number of the queued retry of trial `number`, or None if none was queued (retries used up)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if trial.system_attrs.get(RETRY_HISTORY, [None])[-1] == number:
            return trial.number
    return None
