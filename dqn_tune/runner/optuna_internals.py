"""The only module that touches Optuna's private API; tests/tuning/test_optuna_internals.py fails
loudly when an Optuna upgrade changes any of it.

The study runner needs what `study.optimize` does internally but does not expose: run trials
inside an "optimize loop" (so GridSampler can stop the study when its grid is done), run a trial
under a heartbeat thread, fail trials whose heartbeat stopped (or never started), read the heartbeat
table, read the grid cell GridSampler assigned to a trial and the params a queued trial will take,
store a system attribute, get a handle on a finished trial, and build the storage proxy's server and
client from Optuna's gRPC parts.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, GrpcStorageProxy, RDBStorage
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.runner.attributes import FAIL_REASON

if TYPE_CHECKING:
    import grpc

    from dqn_tune.runner.coordination import Coordinator

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
    # Optuna's typing: the function takes a BaseStorage but needs only a BaseHeartbeat (our coordinator); its
    # thread's __exit__ narrows the exception types of AbstractContextManager's
    return get_heartbeat_thread(trial._trial_id, coordinator(study))  # type: ignore[arg-type, return-value]


def frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as stored now (its state may have been changed by another process)."""
    return study._storage.get_trial(trial._trial_id)


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (unique across studies, unlike its number)."""
    return trial._trial_id


def set_trial_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    """Store `value` on a running trial as a system attribute (Optuna 4 dropped the public setter); unlike a user
    attribute, optuna-dashboard does not print it on the trial's page."""
    trial.storage.set_trial_system_attr(trial._trial_id, key, value)


def trial_handle(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """An `optuna.Trial` for a stored trial, finished ones included (what optuna-dashboard's `save_note` takes)."""
    return optuna.Trial(study, trial._trial_id)


def storage(study: optuna.Study) -> BaseStorage:
    """The storage a study was created or loaded on."""
    return study._storage


def storage_url(study: optuna.Study) -> str:
    """The URL the storage under a study was opened with (runner.storage opens it); TypeError for another storage."""
    url = getattr(study._storage, "url", None)
    if not isinstance(url, str):
        raise TypeError(
            f"dqn-tune studies need a storage opened by dqn_tune.runner.storage, got {type(study._storage).__name__}"
        )
    return url


def coordinator(study: optuna.Study) -> Coordinator:
    """The lock and heartbeats of the storage under a study (runner.storage opens them together); TypeError for a
    storage opened otherwise."""
    found: Coordinator | None = getattr(study._storage, "coordinator", None)
    if found is None:
        raise TypeError(
            f"dqn-tune studies need a storage opened by dqn_tune.runner.storage, got {type(study._storage).__name__}"
        )
    return found


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the study's RUNNING trials whose heartbeat went stale, and those that never sent one for a whole
    grace period (their process died between popping the trial and recording its first heartbeat, which Optuna's
    `fail_stale_trials` never fails), each with its fail reason; the stale-trial callback queues their retries.

    Optuna's loop, with the silent trials and the reasons added: it has no hook for them."""
    fail_and_retry(study, coordinator(study).stale_trials(study._study_id))


def fail_and_retry(study: optuna.Study, reasons: Mapping[int, str]) -> list[int]:
    """Fail each RUNNING trial of `reasons` (storage id -> why) with its reason stored (attributes.FAIL_REASON), and
    queue its retry through the coordinator's stale-trial callback, copied without that reason (a retry inherits the
    user attributes, not why the original failed). Returns the ids failed here (one finished meanwhile, e.g.
    failed by another process, is left alone)."""
    stored = study._storage
    failed = []
    for stored_id, reason in reasons.items():
        try:
            stored.set_trial_user_attr(stored_id, FAIL_REASON, reason)
            if stored.set_trial_state_values(stored_id, state=TrialState.FAIL):
                failed.append(stored_id)
        except UpdateFinishedTrialError:
            pass
    retry = coordinator(study).get_heartbeat_stale_trial_callback()
    if retry is not None:
        for stored_id in failed:
            trial = copy.deepcopy(stored.get_trial(stored_id))
            trial.user_attrs = {name: value for name, value in trial.user_attrs.items() if name != FAIL_REASON}
            retry(study, trial)
    return failed


def running_trial_heartbeats(
    rdb: RDBStorage, study_id: int
) -> tuple[datetime, list[tuple[int, datetime | None, datetime | None]]]:
    """The database's clock now, and each RUNNING trial of the study as (storage id, its start as stored, its last
    heartbeat by the database's clock or None): one query of Optuna's heartbeat table."""
    session = rdb.scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar_one().replace(tzinfo=None)  # as Optuna compares them
        rows = (
            session.query(models.TrialModel, models.TrialHeartbeatModel.heartbeat)
            .outerjoin(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
        trials: list[tuple[int, datetime | None, datetime | None]] = [
            (trial.trial_id, trial.datetime_start, None if beat is None else beat.replace(tzinfo=None))
            for trial, beat in rows
        ]  # the start in this machine's local time, as FrozenTrial has it
        session.commit()
    finally:
        session.close()
    return now, trials


def use_engine(rdb: RDBStorage, engine: sqlalchemy.engine.Engine) -> None:
    """Run the storage's sessions on `engine` from now on (RDBStorage builds its engine from engine_kwargs, and its
    version check at construction needs two connections at once, where a worker wants a pool of one afterwards)."""
    rdb.engine.dispose()
    rdb.engine = engine
    rdb.scoped_session = sqlalchemy.orm.scoped_session(sqlalchemy.orm.sessionmaker(bind=engine))


def grid_id(trial: FrozenTrial) -> int | None:
    """The GridSampler cell of a trial, or None for a trial not made by a GridSampler."""
    value = trial.system_attrs.get(GRID_ID)
    return None if value is None else int(value)


def queued_params(trial: FrozenTrial) -> dict[str, object]:
    """The params a trial was queued with by `study.enqueue_trial` (empty for a trial that was not queued)."""
    return dict(trial.system_attrs.get(FIXED_PARAMS, {}))


def add_storage_service(server: grpc.Server, storage: BaseStorage) -> None:
    """Serve Optuna's storage proxy service for `storage` on `server` (what `run_grpc_proxy_server` does, on a
    server of our own: it takes no interceptors and adds no other service)."""
    from optuna.storages._grpc.auto_generated.api_pb2_grpc import (
        add_StorageServiceServicer_to_server,
    )
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)


def grpc_client(host: str, port: int, target: str, options: Sequence[tuple[str, object]]) -> GrpcStorageProxy:
    """Optuna's proxy client of host:port on a channel to `target` (the same address as gRPC writes it) with
    `options` (GrpcStorageProxy takes none)."""
    import grpc
    from optuna.storages._grpc.auto_generated.api_pb2_grpc import StorageServiceStub
    from optuna.storages._grpc.client import GrpcClientCache

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        client = GrpcStorageProxy(host=host, port=port)
    client._channel.close()
    client._channel = grpc.insecure_channel(target, options=options)
    client._stub = StorageServiceStub(client._channel)
    client._cache = GrpcClientCache(client._stub)
    return client
