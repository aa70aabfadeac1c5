"""The only module that touches Optuna's private API; tests/tuning/test_optuna_internals.py fails
loudly when an Optuna upgrade changes any of it.

The study runner needs what `study.optimize` does internally but does not expose: run trials
inside an "optimize loop" (so GridSampler can stop the study when its grid is done), run a trial
under a heartbeat thread, fail trials whose heartbeat stopped (or never started), reach the
RDBStorage under Optuna's cache layer, read the grid cell GridSampler assigned to a trial and
the params a queued trial will take, store a system attribute, and get a handle on a finished trial.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.runner.attributes import FAIL_REASON

GRID_ID = "grid_id"
"""System attribute in which GridSampler records the cell of a trial."""
FIXED_PARAMS = "fixed_params"
"""System attribute in which `study.enqueue_trial` stores a queued trial's params until it suggests them."""


@contextmanager
def optimize_loop(study: optuna.Study) -> Iterator[None]:
    """Run the block as `study.optimize` runs its trials: samplers may call `study.stop()`, which
    `stop_requested` then reports. The storage session is released on exit."""
    study._thread_local.in_optimize_loop = True
    study._stop_flag = False
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False
        study._storage.remove_session()


def stop_requested(study: optuna.Study) -> bool:
    """Whether `study.stop()` was called inside the current `optimize_loop`."""
    return bool(study._stop_flag)


def heartbeat(study: optuna.Study, trial: optuna.Trial) -> AbstractContextManager[None]:
    """A context that sends the trial's heartbeats while it runs (a no-op without heartbeats)."""
    return get_heartbeat_thread(trial._trial_id, study._storage)


def frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as stored now (its state may have been changed by another process)."""
    return study._storage.get_trial(trial._trial_id)


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a trial (unique across studies, unlike its number)."""
    return trial._trial_id


def set_trial_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    """Store `value` on a running trial as a system attribute (Optuna 4 dropped the public setter); unlike a user
    attribute, optuna-dashboard does not print it on the trial's page."""
    trial.storage.set_trial_system_attr(trial._trial_id, key, value)


def trial_handle(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """An `optuna.Trial` for a stored trial, finished ones included (what optuna-dashboard's `save_note` takes)."""
    return optuna.Trial(study, trial._trial_id)


def rdb_storage(study: optuna.Study) -> RDBStorage:
    """The RDBStorage under a study (optuna wraps it in a cache layer); TypeError for other storages."""
    storage = getattr(study._storage, "_backend", study._storage)
    if not isinstance(storage, RDBStorage):
        raise TypeError(f"dqn-tune studies need an RDBStorage, got {type(storage).__name__}")
    return storage


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the study's RUNNING trials whose heartbeat went stale, and those that never sent one for a whole
    grace period (their process died between popping the trial and recording its first heartbeat, which Optuna's
    `fail_stale_trials` never fails), each with its fail reason; the storage's stale-trial callback queues their
    retries.

    Optuna's loop, with the silent trials and the reasons added: it has no hook for them."""
    rdb = rdb_storage(study)
    interval = rdb.get_heartbeat_interval()
    if interval is None:
        return
    grace_s = rdb.grace_period if rdb.grace_period is not None else 2 * interval
    reasons = {stale_id: f"no heartbeat for over {grace_s:g}s: its worker process died or hung"
               for stale_id in study._storage._get_stale_trial_ids(study._study_id)}
    reasons.update({silent_id: f"no heartbeat within {grace_s:g}s of starting: its worker process died first"
                    for silent_id in _silent_trial_ids(study, rdb, grace_s)})
    fail_and_retry(study, reasons)


def fail_and_retry(study: optuna.Study, reasons: Mapping[int, str]) -> list[int]:
    """Fail each RUNNING trial of `reasons` (storage id -> why) with its reason stored (attributes.FAIL_REASON), and
    queue its retry through the storage's stale-trial callback, copied without that reason (a retry inherits the
    user attributes, not why the original failed). Returns the ids failed here (one finished meanwhile, e.g.
    failed by another process, is left alone)."""
    storage = study._storage
    failed = []
    for stored_id, reason in reasons.items():
        try:
            storage.set_trial_user_attr(stored_id, FAIL_REASON, reason)
            if storage.set_trial_state_values(stored_id, state=TrialState.FAIL):
                failed.append(stored_id)
        except UpdateFinishedTrialError:
            pass
    retry = rdb_storage(study).get_heartbeat_stale_trial_callback()
    if retry is not None:
        for stored_id in failed:
            trial = copy.deepcopy(storage.get_trial(stored_id))
            trial.user_attrs = {name: value for name, value in trial.user_attrs.items() if name != FAIL_REASON}
            retry(study, trial)
    return failed


def _silent_trial_ids(study: optuna.Study, storage: RDBStorage, grace_s: float) -> list[int]:
    """RUNNING trials started more than `grace_s` ago (by Optuna's clock: the asking process's local time) that
    have no heartbeat record."""
    cutoff = datetime.now() - timedelta(seconds=grace_s)
    old = {trial._trial_id for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
           if trial.datetime_start is not None and trial.datetime_start < cutoff}
    if not old:
        return []
    session = storage.scoped_session()
    try:
        beating = {row[0] for row in session.query(models.TrialHeartbeatModel.trial_id)
                   .filter(models.TrialHeartbeatModel.trial_id.in_(old))}
    finally:
        session.close()
    return sorted(old - beating)


def grid_id(trial: FrozenTrial) -> int | None:
    """The GridSampler cell of a trial, or None for a trial not made by a GridSampler."""
    value = trial.system_attrs.get(GRID_ID)
    return None if value is None else int(value)


def queued_params(trial: FrozenTrial) -> dict[str, object]:
    """The params a trial was queued with by `study.enqueue_trial` (empty for a trial that was not queued)."""
    return dict(trial.system_attrs.get(FIXED_PARAMS, {}))
