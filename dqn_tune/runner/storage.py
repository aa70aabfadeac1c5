"""Optuna storages: the default SQLite file, any SQLAlchemy URL, validation and heartbeats.

Every way a storage can be unusable (missing or read-only directory, a file that is not a
database, an unreachable server, another application's database, an Optuna schema of another
version) becomes a StorageError before anything is written. Only commands that create studies
create Optuna's tables, and only in an empty database; commands that read need only read access.
Messages show URLs through `public_url` (passwords hidden).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
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
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from dqn_tune.errors import StorageError
from dqn_tune.runner.defaults import DEFAULT_STORAGE, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S
from dqn_tune.runner.storage_errors import storage_faults
from dqn_tune.runner.urls import public_url, sqlite_path

MAX_RETRY = 2
"""How many times a trial whose worker died is re-run."""
SCHEMA_LOCK = "dqn-tune: create Optuna's tables"
"""Name of the lock under which a process creates Optuna's tables in a new database."""
OPTUNA_TABLES = frozenset({
    "studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials",
    "trial_user_attributes", "trial_system_attributes", "trial_params", "trial_values", "trial_intermediate_values",
    "trial_heartbeats", "version_info", "alembic_version"})
"""The tables of Optuna's RDB schema."""
OPTUNA_CORE_TABLES = frozenset({"studies", "trials", "version_info", "alembic_version"})
"""Tables whose presence means a database holds Optuna's schema (of some version)."""


def prepare_url(url: str | None, *, write: bool = True) -> str:
    """Check `url` (None: DEFAULT_STORAGE) can be opened; with `write`, that it can hold new studies and
    trials (the default `studies/` folder may be missing if it can be made: `open_storage` makes it).

    A SQLite file is only read through when `write` is false: it must exist and be readable. Writing
    needs the file writable and its directory too (SQLite creates its journal beside the file).
    Raises StorageError naming the URL (password hidden) and what to do, before any connection is made.
    """
    if url is None:
        url = DEFAULT_STORAGE
    if not url.strip():
        raise StorageError(f"storage URL {url!r} is empty; expected e.g. {DEFAULT_STORAGE} or "
                           "postgresql+psycopg2://user@host/db (leave out --storage for the default)")
    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        reason = f" ({exc})" if isinstance(exc, ValueError) else ""
        example = (f"sqlite:///{url}" if "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3"))
                   else f"{DEFAULT_STORAGE} or postgresql+psycopg2://user@host/db")
        raise StorageError(f"storage URL {public_url(url)!r} is not a valid SQLAlchemy URL{reason}; expected e.g. "
                           f"{example}") from None
    path = sqlite_path(url)
    if path is None:
        return url
    where = f"cannot open storage {public_url(url)!r}"
    try:
        if write and url == DEFAULT_STORAGE and not path.parent.exists():
            if not os.access(path.parent.parent, os.W_OK | os.X_OK):
                raise StorageError(f"{where}: cannot create directory {str(path.parent)!r} in "
                                   f"{str(path.parent.parent)!r} (not writable)")
            return url
        if path.is_dir():
            raise StorageError(f"{where}: {str(path)!r} is a directory; expected the database file in it, e.g. "
                               f"sqlite:///{path / Path(DEFAULT_STORAGE).name}")
        if not write and url == DEFAULT_STORAGE and not path.is_file():
            raise StorageError(f"no study storage in this directory ({str(path)!r} relative to {os.getcwd()!r} does "
                               "not exist): run the command where you ran 'dqn-tune tune', or give --storage with an "
                               f"absolute path, e.g. sqlite:///{path.absolute()}")
        if not path.parent.is_dir():
            raise StorageError(f"{where}: directory {str(path.parent)!r} does not exist")
        if not write:
            if not path.is_file():
                raise StorageError(f"no SQLite database at {str(path)!r} (storage {public_url(url)!r}); check "
                                   "--storage, or create a study first with 'dqn-tune tune'")
            if not os.access(path, os.R_OK):
                raise StorageError(f"{where}: {str(path)!r} is not readable")
        elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"{where}: {str(path)!r} is not readable and writable")
        elif not os.access(path.parent, os.W_OK | os.X_OK):
            raise StorageError(f"{where}: directory {str(path.parent)!r} is not writable (SQLite creates "
                               "its journal file beside the database)")
    except OSError as exc:  # e.g. a parent directory this user may not enter, a name too long
        raise _os_error(url, exc) from None
    return url


def _os_error(url: str, exc: OSError) -> StorageError:
    """The StorageError for an OSError met while checking or preparing the SQLite file of `url`."""
    return StorageError(f"cannot open storage {public_url(url)!r}: {exc.strerror}: {exc.filename!r}")


def open_storage(url: str | None, *, heartbeat: bool = True, heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S,
                 grace_period_s: int = GRACE_PERIOD_S) -> RDBStorage:
    """Open the RDB storage at `url`, creating Optuna's tables if the database is empty.

    With `heartbeat`, running trials send a heartbeat every `heartbeat_interval_s`, and a trial whose
    worker died (SIGKILL, power loss) is marked FAIL after `grace_period_s` without one and retried
    up to MAX_RETRY times. Processes opening a new database at once create its tables one at a time.
    A database holding other tables than Optuna's, or Optuna's schema of another version, is refused
    before anything is written.
    """
    if heartbeat and not 0 < heartbeat_interval_s < grace_period_s:
        raise StorageError(f"heartbeat interval {heartbeat_interval_s}s and grace period {grace_period_s}s are invalid; "
                           "expected 0 < interval < grace period")
    url = prepare_url(url)
    if url == DEFAULT_STORAGE:
        try:
            sqlite_path(url).parent.mkdir(exist_ok=True)  # type: ignore[union-attr]
        except OSError as exc:
            raise _os_error(url, exc) from None
    kwargs: dict[str, object] = {}
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs = {"heartbeat_interval": heartbeat_interval_s, "grace_period": grace_period_s,
                      "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)}
    if _has_optuna_schema(url):
        return _rdb_storage(url, create_tables=False, **kwargs)
    with _guarded(url), _named_lock(url, SCHEMA_LOCK):
        return _rdb_storage(url, create_tables=not _has_optuna_schema(url), **kwargs)


def open_existing_storage(url: str | None) -> RDBStorage:
    """Open `url` without heartbeats, for commands that only look at studies (report, dashboard, retrain):
    it needs read access only, and never gets a schema (a database without Optuna's is a StorageError)."""
    url = prepare_url(url, write=False)
    if not _has_optuna_schema(url):
        raise StorageError(f"storage {public_url(url)!r} holds no Optuna studies (its database has no Optuna "
                           "tables); check --storage, or create a study first with 'dqn-tune tune'")
    return _rdb_storage(url, create_tables=False)


def _rdb_storage(url: str, *, create_tables: bool, **kwargs: object) -> RDBStorage:
    """RDBStorage(url), creating its tables only if asked; errors become one-line StorageErrors."""
    engine_kwargs = {**_connect_args(url), **({} if sqlite_path(url) else {"pool_pre_ping": True})}
    with _guarded(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat options
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=not create_tables,
                              **kwargs)  # type: ignore[arg-type]
        except RuntimeError as exc:  # Optuna's schema version check
            if "table schema" not in str(exc):
                raise
            raise StorageError(_schema_version_message(url, str(exc))) from None


def _has_optuna_schema(url: str) -> bool:
    """Whether the database at `url` holds Optuna's tables; False for an empty database, or one holding
    only part of Optuna's tables (a creation cut short, which `open_storage` completes).

    A database with other tables and without Optuna's is a StorageError: dqn-tune never adds its
    tables to another application's database. Only reads (the table names).
    """
    with _guarded(url):
        try:
            engine = sqlalchemy.create_engine(url, poolclass=NullPool, **_connect_args(url))
            try:
                tables = set(sqlalchemy.inspect(engine).get_table_names())
            finally:
                engine.dispose()
        except (TypeError, ValueError) as exc:  # options the driver does not take, e.g. sqlite:///s.db?x=1
            raise StorageError(f"cannot open storage {public_url(url)!r}: {exc}") from None
    if tables >= OPTUNA_CORE_TABLES:
        return True
    if tables <= OPTUNA_TABLES:
        return False
    others = sorted(tables - OPTUNA_TABLES)
    listing = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    raise StorageError(f"storage {public_url(url)!r} is not an Optuna database: it holds other tables ({listing}) "
                       "and not Optuna's; dqn-tune leaves other applications' databases alone: give --storage a new "
                       "or an Optuna database")


def _schema_version_message(url: str, optuna_message: str) -> str:
    """One line for Optuna's schema version error: which versions, and what to do."""
    made_by = re.search(r"set up by optuna ([^)\s]+)", optuna_message)
    made = f"optuna {made_by.group(1)}" if made_by else "another optuna version"
    if "pip install -U optuna" in optuna_message:
        advice = f"it was made by a newer optuna: install that version (pip install -U 'optuna>={made_by.group(1)}')" \
            if made_by else "it was made by a newer optuna: pip install -U optuna"
    else:
        advice = (f"back it up, then upgrade it with 'optuna storage upgrade --storage {public_url(url)}' "
                  f"(older optuna versions can no longer read it afterwards)")
    return (f"storage {public_url(url)!r} has the table schema of {made}, which optuna {optuna.__version__} "
            f"cannot use; {advice}")


def _connect_args(url: str) -> dict[str, object]:
    """Engine arguments: SQLite waits up to 60 s for another process's write lock."""
    return {"connect_args": {"timeout": 60}} if sqlite_path(url) else {}


@contextmanager
def _guarded(url: str) -> Iterator[None]:
    """Turn a database error (see `storage_faults`) or a missing driver raised inside the block into a one-line
    StorageError naming `url`."""
    try:
        with storage_faults(url, opening=True):
            yield
    except ImportError as exc:
        raise StorageError(f"cannot open storage {public_url(url)!r}: {exc}") from None


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
        raise StorageError(f"study {study_name!r} not found in {public_url(storage.url)!r}; studies there: {listing}")
    return optuna.load_study(study_name=study_name, storage=storage)


def artifact_dir(url: str | None) -> Path:
    """Where trial artifacts (learning-curve PNGs) of a storage live: beside a SQLite file, else studies/."""
    path = sqlite_path(url or DEFAULT_STORAGE)
    return (path.parent if path is not None else Path("studies")) / "artifacts"
