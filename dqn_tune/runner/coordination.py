"""What the processes sharing a study need beyond Optuna's storage API: a lock per study and heartbeats.

A `Coordinator` gives the study runner
- `lock(name)`: one lock per study, held while a command creates or checks its study and while a
  worker asks for its next trial (see trial_queue); shared by every process and machine using it;
- heartbeats of running trials (Optuna's BaseHeartbeat, so Optuna's heartbeat thread sends them), and
  `stale_trials`: the RUNNING trials whose heartbeat stopped, or never came, for a whole grace period.
A heartbeat that cannot be recorded is reported in one line and tried again at the next beat: the
heartbeat thread never dies of a database restart.

``DatabaseCoordinator` does this on the database itself: a file lock beside a SQLite file or a
PostgreSQL advisory lock (other backends are not locked), and Optuna's heartbeat table. The storage
proxy (proxy.py) serves one to its clients. A process whose pool holds one connection takes the
advisory lock on that connection (the lock belongs to the database session, which outlives each
checkout), so that waiting for the lock costs no second connection: a fleet of N processes needs N.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from dqn_tune.runner.optuna_internals import running_trial_heartbeats
from dqn_tune.runner.retry import RetryPolicy, cause, is_transient, retried

LOGGER = logging.getLogger(__name__)

MAX_RETRY = 2
"""How many times a trial whose worker died is re-run."""


class Coordinator(BaseHeartbeat, ABC):
    """The study lock and the heartbeats of one storage, as the processes of one command use them."""

    def __init__(self, *, heartbeat_interval_s: int | None, grace_period_s: int, where: str) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        """Seconds between a running trial's heartbeats; None: no heartbeats (commands that only read)."""
        self.grace_period_s = grace_period_s
        """Seconds without a heartbeat after which a RUNNING trial counts as dead."""
        self.where = where
        """The storage as messages name it (password hidden)."""
        self._beats_failing = False

    @abstractmethod
    def lock(self, name: str) -> AbstractContextManager[None]:
        """Hold the lock `name` (a study name) in this storage, shared by every process and machine using it."""

    @abstractmethod
    def beat(self, trial_id: int) -> None:
        """Record a heartbeat of the trial (its storage id), by the database's clock; may raise."""

    @abstractmethod
    def stale_trials_within(self, study_id: int, grace_s: float) -> dict[int, str]:
        """RUNNING trials of the study (storage ids) silent for `grace_s`, each with why it counts as dead."""

    def stale_trials(self, study_id: int) -> dict[int, str]:
        """RUNNING trials whose heartbeat stopped, or never came, for a grace period, with why; {} without
        heartbeats."""
        return {} if self.heartbeat_interval_s is None else self.stale_trials_within(study_id, self.grace_period_s)

    def record_heartbeat(self, trial_id: int) -> None:
        """Record a heartbeat; a failure is reported once (and the recovery) and the next beat tries again."""
        try:
            self.beat(trial_id)
        except Exception as exc:  # noqa: BLE001 - the thread must live: the next beat retries
            if not self._beats_failing:
                LOGGER.warning(
                    "storage %s: a heartbeat was not recorded (%s); trying again every %ss",
                    self.where,
                    cause(exc),
                    self.heartbeat_interval_s,
                )
            self._beats_failing = True
            return
        if self._beats_failing:
            LOGGER.warning("storage %s: heartbeats recorded again", self.where)
            self._beats_failing = False

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return sorted(self.stale_trials(study_id))

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval_s

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        """Optuna's retry of a dead trial: a copy queued as WAITING, at most MAX_RETRY times per trial."""
        if self.heartbeat_interval_s is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def close(self) -> None:
        """Release what the coordinator holds open (nothing by default)."""


def stale_reasons(
    now_db: datetime, trials: list[tuple[int, datetime | None, datetime | None]], grace_s: float
) -> dict[int, str]:
    """Why each of `trials` (storage id, start by the asking process's clock, last heartbeat by the database's)
    counts as dead: no heartbeat for `grace_s` by the database's clock, or none at all `grace_s` after it started
    by this process's clock (its process died between popping the trial and its first heartbeat, which Optuna's
    own check never fails)."""
    local_cutoff = datetime.now() - timedelta(seconds=grace_s)
    reasons = {}
    for trial_id, started, beat in trials:
        if beat is not None and now_db - beat > timedelta(seconds=grace_s):
            reasons[trial_id] = f"no heartbeat for over {grace_s:g}s: its worker process died or hung"
        elif beat is None and started is not None and started < local_cutoff:
            reasons[trial_id] = f"no heartbeat within {grace_s:g}s of starting: its worker process died first"
    return reasons


class DatabaseCoordinator(Coordinator):
    """Locks and heartbeats in the database of an RDBStorage."""

    def __init__(
        self,
        storage: RDBStorage,
        *,
        sqlite_file: Path | None,
        engine_kwargs: dict[str, Any],
        retry: RetryPolicy,
        heartbeat_interval_s: int | None,
        grace_period_s: int,
        where: str,
        one_connection: bool = False,
    ) -> None:
        super().__init__(heartbeat_interval_s=heartbeat_interval_s, grace_period_s=grace_period_s, where=where)
        self._storage = storage
        self._sqlite_file = sqlite_file
        self._engine_kwargs = engine_kwargs
        self._retry = retry
        self._one_connection = one_connection and storage.engine.dialect.name == "postgresql"
        """The storage's pool holds one connection: the advisory lock is taken on it (see the module's doc)."""

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        if self._one_connection:
            retried(lambda: self._on_pooled_connection("pg_advisory_lock", name), policy=self._retry, where=self.where)
            try:
                yield
            finally:
                self._on_pooled_connection("pg_advisory_unlock", name)
            return
        held = retried(lambda: self.try_lock(name, wait=True), policy=self._retry, where=self.where)
        assert held is not None  # waiting always ends holding the lock
        with held:
            yield

    def _on_pooled_connection(self, function: str, name: str) -> None:
        """`SELECT function(key of name)` on the pool's one connection (an unlock on a connection replaced since the
        lock, after the server restarted, finds nothing to unlock: the lock ended with the old session)."""
        try:
            with self._storage.engine.connect() as connection:
                connection.execute(text(f"SELECT {function}(:key)"), {"key": lock_key(name)})
                connection.commit()
        except DBAPIError as exc:
            if function == "pg_advisory_lock" or not is_transient(exc):
                raise

    def try_lock(self, name: str, *, wait: bool = False) -> ExitStack | None:
        """The lock `name`, held until the returned stack is closed; None if another process holds it (only
        without `wait`). On PostgreSQL over a connection of its own, outside the storage's pool (the proxy holds a
        lease's lock across many calls of other clients)."""
        with ExitStack() as stack:
            if self._sqlite_file is not None:
                acquired = stack.enter_context(sqlite_lock(self._sqlite_file, wait=wait))
            elif self._storage.engine.dialect.name == "postgresql":
                connect_args = dict(self._engine_kwargs.get("connect_args", {}))
                if "application_name" in connect_args:
                    connect_args["application_name"] += " study lock"
                engine = sqlalchemy.create_engine(
                    self._storage.url, poolclass=NullPool, **{**self._engine_kwargs, "connect_args": connect_args}
                )
                stack.callback(engine.dispose)
                acquired = stack.enter_context(advisory_lock(stack.enter_context(engine.connect()), name, wait=wait))
            else:
                acquired = True
            return stack.pop_all() if acquired else None

    def beat(self, trial_id: int) -> None:
        self._storage.record_heartbeat(trial_id)

    def stale_trials_within(self, study_id: int, grace_s: float) -> dict[int, str]:
        now_db, trials = retried(
            lambda: running_trial_heartbeats(self._storage, study_id), policy=self._retry, where=self.where
        )
        return stale_reasons(now_db, trials, grace_s)

    def close(self) -> None:
        self._storage.engine.dispose()


def lock_key(name: str) -> int:
    """The 64-bit PostgreSQL advisory lock key of lock `name`."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def advisory_lock(connection: Connection, name: str, *, wait: bool = True) -> Iterator[bool]:
    """A PostgreSQL session-level advisory lock keyed by `name`; yields whether it is held (always, with `wait`).

    A connection lost meanwhile took the lock with it: its unlock error is ignored."""
    key = lock_key(name)
    if wait:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    elif not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
        yield False
        return
    try:
        yield True
    finally:
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        except DBAPIError as exc:
            if not is_transient(exc):
                raise


@contextmanager
def sqlite_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock shared by the processes of this machine using the SQLite file `path`; yields whether it
    is held (always, with `wait`).

    It is a `flock` on `<path>.lock`; where that file cannot be created, the block runs unlocked.
    """
    try:
        handle = open(f"{path}.lock", "a+b")  # noqa: SIM115 - closed below
    except OSError:
        yield True
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
