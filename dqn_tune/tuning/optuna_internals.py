"""The only module that touches Optuna's private API; tests/tuning/test_optuna_internals.py fails
loudly when an Optuna upgrade changes any of it.

The study runner needs what `study.optimize` does internally but does not expose: run trials
inside an "optimize loop" (so GridSampler can stop the study when its grid is done), run a trial
under a heartbeat thread, reach the RDBStorage under Optuna's cache layer, and read the grid
cell GridSampler assigned to a trial, and the params a queued trial will take.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import FrozenTrial

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


def rdb_storage(study: optuna.Study) -> RDBStorage:
    """The RDBStorage under a study (optuna wraps it in a cache layer); TypeError for other storages."""
    storage = getattr(study._storage, "_backend", study._storage)
    if not isinstance(storage, RDBStorage):
        raise TypeError(f"dqn-tune studies need an RDBStorage, got {type(storage).__name__}")
    return storage


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the study's trials whose heartbeat stopped (Optuna's stale-trial callback queues retries)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def grid_id(trial: FrozenTrial) -> int | None:
    """The GridSampler cell of a trial, or None for a trial not made by a GridSampler."""
    value = trial.system_attrs.get(GRID_ID)
    return None if value is None else int(value)


def queued_params(trial: FrozenTrial) -> dict[str, object]:
    """The params a trial was queued with by `study.enqueue_trial` (empty for a trial that was not queued)."""
    return dict(trial.system_attrs.get(FIXED_PARAMS, {}))
