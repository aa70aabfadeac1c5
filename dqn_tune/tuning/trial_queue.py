"""Asking for the next trial so that no two processes ever get the same one.

Optuna 5.0 on SQLite can hand one queued (WAITING) trial to two processes: SQLite ignores
`SELECT ... FOR UPDATE`, so two workers both see it WAITING and both run it; the second then
crashes with "Cannot tell a COMPLETE trial" (optuna issues 4621, 4002). Retries of dead trials and
GridSampler cells are exactly such trials. `ask_trial` serialises the whole "fail stale trials,
pop or create a trial, pick its grid cell" step with a lock shared by every process of the study:
a file lock beside the SQLite file, or a PostgreSQL advisory lock (which also makes
`total_trials` exact across machines). Other backends rely on their own row locks.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from dqn_tune.tuning.optuna_internals import fail_stale_trials, rdb_storage, trial_id
from dqn_tune.tuning.records import RETRY_OF
from dqn_tune.tuning.storage import study_lock


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards a study's total: all of them except retries of trials whose worker died."""
    return sum(RETRY_OF not in trial.system_attrs for trial in study.get_trials(deepcopy=False))


def ask_trial(study: optuna.Study, *, total_trials: int | None = None) -> optuna.Trial | None:
    """The study's next trial, given to this process only; None once the study holds `total_trials`.

    Under the study lock: fail trials whose heartbeat went stale (queuing their retries), then pop a
    queued trial or create one, and record its first heartbeat so that it cannot stay RUNNING
    forever if this process dies before its heartbeat thread starts.
    """
    storage = rdb_storage(study)
    with study_lock(storage, study.study_name):
        fail_stale_trials(study)
        if total_trials is not None and counted_trials(study) >= total_trials and not study.get_trials(
                deepcopy=False, states=(TrialState.WAITING,)):
            return None
        trial = study.ask()
        if storage.get_heartbeat_interval() is not None:
            storage.record_heartbeat(trial_id(trial))
        return trial
