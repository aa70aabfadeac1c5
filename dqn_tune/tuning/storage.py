"""Optuna storages: the default SQLite file, any SQLAlchemy URL, validation and heartbeats.

Every way a storage can be unusable (missing or read-only directory, a file that is not a
database, an unreachable server) becomes a StorageError before anything is written.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from dqn_tune.errors import StorageError

DEFAULT_STORAGE = "sqlite:///studies/dqn_tune.db"
HEARTBEAT_INTERVAL_S = 5
"""Seconds between a running trial's heartbeats."""
GRACE_PERIOD_S = 20
"""Seconds without a heartbeat after which a RUNNING trial counts as dead (its worker was killed)."""
MAX_RETRY = 2
"""How many times a trial whose worker died is re-run."""
SCHEMA_LOCK = "dqn-tune: create Optuna's tables"
"""Name of the lock under which a process creates Optuna's tables in a new database."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL (None for other backends or in-memory SQLite)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def prepare_url(url: str | None) -> str:
    """Check `url` (default: DEFAULT_STORAGE) can hold a study; create the default `studies/` folder.

    Raises StorageError naming the URL and what to do, before any connection is made.
    """
    url = url or DEFAULT_STORAGE
    try:
        make_url(url)
    except ArgumentError:
        raise StorageError(f"storage URL {url!r} is not a valid SQLAlchemy URL; expected e.g. "
                           f"{DEFAULT_STORAGE} or postgresql+psycopg2://user@host/db") from None
    path = sqlite_path(url)
    if path is None:
        return url
    try:
        if url == DEFAULT_STORAGE:
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.is_dir():
            raise StorageError(f"cannot open storage {url!r}: directory {str(path.parent)!r} does not exist")
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"cannot open storage {url!r}: {str(path)!r} is not readable and writable")
        if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
            raise StorageError(f"cannot open storage {url!r}: directory {str(path.parent)!r} is not writable")
    except OSError as exc:  # e.g. a parent directory this user may not enter
        raise StorageError(f"cannot open storage {url!r}: {exc.strerror}: {exc.filename!r}") from None
    return url


def open_storage(url: str | None, *, heartbeat: bool = True, heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S,
                 grace_period_s: int = GRACE_PERIOD_S) -> RDBStorage:
    """Open (creating tables if needed) the RDB storage at `url`.

    With `heartbeat`, running trials send a heartbeat every `heartbeat_interval_s`, and a trial whose
    worker died (SIGKILL, power loss) is marked FAIL after `grace_period_s` without one and retried
    up to MAX_RETRY times. Processes opening a new database at once create its tables one at a time.
    """
    url = prepare_url(url)
    if heartbeat and not 0 < heartbeat_interval_s < grace_period_s:
        raise StorageError(f"heartbeat interval {heartbeat_interval_s}s and grace period {grace_period_s}s are invalid; "
                           "expected 0 < interval < grace period")
    engine_kwargs = {"connect_args": {"timeout": 60}} if sqlite_path(url) else {"pool_pre_ping": True}
    try:
        with _named_lock(url, SCHEMA_LOCK), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat options
            kwargs: dict[str, object] = {}
            if heartbeat:
                kwargs = {"heartbeat_interval": heartbeat_interval_s, "grace_period": grace_period_s,
                          "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)}
            return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StorageError(f"cannot open storage {url!r}: {reason}") from None


def open_existing_storage(url: str | None) -> RDBStorage:
    """Open `url` without heartbeats, for commands that only look at studies (report, dashboard, retrain):
    a SQLite file that does not exist is a StorageError, not a new database."""
    url = prepare_url(url)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StorageError(f"no SQLite database at {str(path)!r} (storage {url!r}); check --storage, "
                           "or create a study first with 'dqn-tune tune'")
    return open_storage(url, heartbeat=False)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """How every process of a command opens the storage (picklable)."""

    url: str
    heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S
    grace_period_s: int = GRACE_PERIOD_S

    def open(self) -> RDBStorage:
        """The storage, with heartbeats: a trial whose worker died is failed after the grace period and retried."""
        return open_storage(self.url, heartbeat_interval_s=self.heartbeat_interval_s,
                            grace_period_s=self.grace_period_s)


def public_url(url: str) -> str:
    """`url` with its password hidden, for everything the tool prints or stores."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@contextmanager
def study_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """Hold the lock of `study_name` in `storage`, shared by every process using that study: a file lock
    beside a SQLite file, a PostgreSQL advisory lock (across machines); other backends are not locked."""
    if storage.engine.dialect.name == "postgresql":
        with storage.engine.connect() as connection, _advisory_lock(connection, study_name):
            yield
    else:
        with _named_lock(storage.url, study_name):
            yield


@contextmanager
def _named_lock(url: str, name: str) -> Iterator[None]:
    """A lock shared by the processes using the database at `url`: on SQLite one file lock per database
    (whatever `name`), on PostgreSQL an advisory lock per name over its own connection."""
    path = sqlite_path(url)
    if path is not None:
        with sqlite_lock(path):
            yield
    elif make_url(url).get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection, _advisory_lock(connection, name):
                yield
        finally:
            engine.dispose()
    else:
        yield


@contextmanager
def _advisory_lock(connection: Connection, name: str) -> Iterator[None]:
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    try:
        yield
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def sqlite_lock(path: Path) -> Iterator[None]:
    """An exclusive lock shared by the processes of this machine using the SQLite file `path`.

    It is a `flock` on `<path>.lock`; where that file cannot be created, the block runs unlocked.
    """
    try:
        handle = open(f"{path}.lock", "a+b")  # noqa: SIM115 - closed below
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def study_names(storage: RDBStorage) -> list[str]:
    """Names of the studies in `storage`, sorted."""
    return sorted(optuna.get_all_study_names(storage))


def load_study(storage: RDBStorage, study_name: str) -> optuna.Study:
    """Load an existing study; a missing one is a StorageError that lists those that exist."""
    names = study_names(storage)
    if study_name not in names:
        listing = ", ".join(names) if names else "none"
        raise StorageError(f"study {study_name!r} not found in {storage.url!r}; studies there: {listing}")
    return optuna.load_study(study_name=study_name, storage=storage)


def artifact_dir(url: str | None) -> Path:
    """Where trial artifacts (learning-curve PNGs) of a storage live: beside a SQLite file, else studies/."""
    path = sqlite_path(url or DEFAULT_STORAGE)
    return (path.parent if path is not None else Path("studies")) / "artifacts"
