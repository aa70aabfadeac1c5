"""Optuna storages: the default SQLite file, any SQLAlchemy URL, a storage proxy (grpc://host:port), validation.

Every way a storage can be unusable (missing or read-only directory, a file that is not a
database, an unreachable server, another application's database, an Optuna schema of another
version) becomes a StorageError before anything is written. Only commands that create studies
create Optuna's tables, and only in an empty database; commands that read need only read access.
Messages show URLs through `public_url` (passwords hidden).

A storage opens as a SharedStorage: every call retried on transient errors (retry.py), with the
coordinator of the same storage (study lock, heartbeats: coordination.py, or the proxy's: proxy.py).
A process keeps one database connection open (its pool holds one, shared by its heartbeat thread
and, on PostgreSQL, by the study lock: coordination.py).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, get_storage
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from dqn_tune.errors import ConfigError, StorageError
from dqn_tune.runner.coordination import DatabaseCoordinator, advisory_lock, sqlite_lock
from dqn_tune.runner.defaults import DEFAULT_STORAGE, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, RETRY_TIMEOUT_S
from dqn_tune.runner.optuna_internals import use_engine
from dqn_tune.runner.retry import DEFAULT_RETRY, RetryPolicy, retried
from dqn_tune.runner.shared_storage import SharedStorage
from dqn_tune.runner.storage_errors import storage_faults
from dqn_tune.runner.trial_queue import process_name
from dqn_tune.runner.urls import public_url, sqlite_path

CONNECT_TIMEOUT_S = 5
"""Seconds a database server has to answer a new connection: a host that never answers is retried and then
reported, and a stop signal (which Python handles only once the driver returns) waits at most this long."""
POOL_SIZE = 1
"""Database connections a process keeps open (its heartbeat thread shares it): a fleet costs one per worker."""
PROXY_POOL_SIZE = 8
"""Database connections a proxy keeps open for its threads (proxy.THREADS), whatever the number of workers."""
PROXY_SCHEME = "grpc"
"""URL scheme of a storage proxy: grpc://host:port (`dqn-tune storage-proxy`)."""
SCHEMA_LOCK = "dqn-tune: create Optuna's tables"
"""Name of the lock under which a process creates Optuna's tables in a new database."""
OPTUNA_TABLES = frozenset(
    {
        "studies",
        "study_directions",
        "study_user_attributes",
        "study_system_attributes",
        "trials",
        "trial_user_attributes",
        "trial_system_attributes",
        "trial_params",
        "trial_values",
        "trial_intermediate_values",
        "trial_heartbeats",
        "version_info",
        "alembic_version",
    }
)
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
        raise StorageError(
            f"storage URL {url!r} is empty; expected e.g. {DEFAULT_STORAGE} or "
            "postgresql+psycopg2://user@host/db (leave out --storage for the default)"
        )
    if url.startswith(f"{PROXY_SCHEME}://"):
        proxy_address(url)
        return url
    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        reason = f" ({exc})" if isinstance(exc, ValueError) else ""
        example = (
            f"sqlite:///{url}"
            if "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3"))
            else f"{DEFAULT_STORAGE} or postgresql+psycopg2://user@host/db"
        )
        raise StorageError(
            f"storage URL {public_url(url)!r} is not a valid SQLAlchemy URL{reason}; expected e.g. {example}"
        ) from None
    path = sqlite_path(url)
    if path is None:
        return url
    where = f"cannot open storage {public_url(url)!r}"
    try:
        if write and url == DEFAULT_STORAGE and not path.parent.exists():
            if not os.access(path.parent.parent, os.W_OK | os.X_OK):
                raise StorageError(
                    f"{where}: cannot create directory {str(path.parent)!r} in "
                    f"{str(path.parent.parent)!r} (not writable)"
                )
            return url
        if path.is_dir():
            raise StorageError(
                f"{where}: {str(path)!r} is a directory; expected the database file in it, e.g. "
                f"sqlite:///{path / Path(DEFAULT_STORAGE).name}"
            )
        if not write and url == DEFAULT_STORAGE and not path.is_file():
            raise StorageError(
                f"no study storage in this directory ({str(path)!r} relative to {os.getcwd()!r} does "
                "not exist): run the command where you ran 'dqn-tune tune', or give --storage with an "
                f"absolute path, e.g. sqlite:///{path.absolute()}"
            )
        if not path.parent.is_dir():
            raise StorageError(f"{where}: directory {str(path.parent)!r} does not exist")
        if not write:
            if not path.is_file():
                raise StorageError(
                    f"no SQLite database at {str(path)!r} (storage {public_url(url)!r}); check "
                    "--storage, or create a study first with 'dqn-tune tune'"
                )
            if not os.access(path, os.R_OK):
                raise StorageError(f"{where}: {str(path)!r} is not readable")
        elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"{where}: {str(path)!r} is not readable and writable")
        elif not os.access(path.parent, os.W_OK | os.X_OK):
            raise StorageError(
                f"{where}: directory {str(path.parent)!r} is not writable (SQLite creates "
                "its journal file beside the database)"
            )
    except OSError as exc:  # e.g. a parent directory this user may not enter, a name too long
        raise _os_error(url, exc) from None
    return url


def _os_error(url: str, exc: OSError) -> StorageError:
    """The StorageError for an OSError met while checking or preparing the SQLite file of `url`."""
    return StorageError(f"cannot open storage {public_url(url)!r}: {exc.strerror}: {exc.filename!r}")


def proxy_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a storage proxy URL grpc://host:port; None for other URLs; StorageError for a bad one."""
    if not url.startswith(f"{PROXY_SCHEME}://"):
        return None
    address = url.removeprefix(f"{PROXY_SCHEME}://").rstrip("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host or "@" in host:
        raise StorageError(
            f"storage URL {public_url(url)!r} is not a storage proxy address; expected "
            f"{PROXY_SCHEME}://HOST:PORT as 'dqn-tune storage-proxy' prints it"
        )
    return host.strip("[]"), int(port)


def in_memory(url: str) -> bool:
    """Whether `url` is an in-memory SQLite database (gone when the process ends)."""
    return proxy_address(url) is None and make_url(url).get_backend_name() == "sqlite" and sqlite_path(url) is None


def open_storage(
    url: str | None,
    *,
    heartbeat: bool = True,
    heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S,
    grace_period_s: int = GRACE_PERIOD_S,
    retry: RetryPolicy = DEFAULT_RETRY,
    pool_size: int = POOL_SIZE,
) -> SharedStorage:
    """Open the storage at `url` (a database, created with Optuna's tables if empty, or a storage proxy).

    With `heartbeat`, running trials send a heartbeat every `heartbeat_interval_s`, and a trial whose
    worker died (SIGKILL, power loss) is marked FAIL after `grace_period_s` without one and retried
    up to MAX_RETRY times. Processes opening a new database at once create its tables one at a time.
    A database holding other tables than Optuna's, or Optuna's schema of another version, is refused
    before anything is written. A server that is down or full is retried under `retry`.
    """
    if heartbeat and not 0 < heartbeat_interval_s < grace_period_s:
        raise StorageError(
            f"heartbeat interval {heartbeat_interval_s}s and grace period {grace_period_s}s are invalid; "
            "expected 0 < interval < grace period"
        )
    url = prepare_url(url)
    interval = heartbeat_interval_s if heartbeat else None
    if (address := proxy_address(url)) is not None:
        return _open_proxy(url, address, retry, interval, grace_period_s)
    if url == DEFAULT_STORAGE:
        try:
            sqlite_path(url).parent.mkdir(exist_ok=True)  # type: ignore[union-attr]
        except OSError as exc:
            raise _os_error(url, exc) from None

    def connect() -> RDBStorage:
        if _has_optuna_schema(url):
            return _rdb_storage(url, create_tables=False, pool_size=pool_size)
        with _guarded(url), _named_lock(url, SCHEMA_LOCK):
            return _rdb_storage(url, create_tables=not _has_optuna_schema(url), pool_size=pool_size)

    return _shared(
        url, retried(connect, policy=retry, where=repr(public_url(url))), retry, interval, grace_period_s, pool_size
    )


def open_existing_storage(url: str | None, *, retry: RetryPolicy = DEFAULT_RETRY) -> SharedStorage:
    """Open `url` without heartbeats, for commands that only look at studies (report, dashboard, retrain):
    it needs read access only, and never gets a schema (a database without Optuna's is a StorageError)."""
    url = prepare_url(url, write=False)
    if (address := proxy_address(url)) is not None:
        return _open_proxy(url, address, retry, None, GRACE_PERIOD_S)

    def connect() -> RDBStorage:
        if not _has_optuna_schema(url):
            raise StorageError(
                f"storage {public_url(url)!r} holds no Optuna studies (its database has no Optuna "
                "tables); check --storage, or create a study first with 'dqn-tune tune'"
            )
        return _rdb_storage(url, create_tables=False, pool_size=POOL_SIZE)

    return _shared(
        url, retried(connect, policy=retry, where=repr(public_url(url))), retry, None, GRACE_PERIOD_S, POOL_SIZE
    )


def _shared(
    url: str, rdb: RDBStorage, retry: RetryPolicy, heartbeat_interval_s: int | None, grace_period_s: int, pool_size: int
) -> SharedStorage:
    """The SharedStorage of an opened database: Optuna's cache layer over it, and its coordinator."""
    coordinator = DatabaseCoordinator(
        rdb,
        sqlite_file=sqlite_path(url),
        engine_kwargs=_connect_args(url),
        retry=retry,
        heartbeat_interval_s=heartbeat_interval_s,
        grace_period_s=grace_period_s,
        where=repr(public_url(url)),
        one_connection=pool_size == 1,
    )
    return SharedStorage(get_storage(rdb), coordinator, url=url, retry=retry)  # type: ignore[abstract]


def proxy_module() -> ModuleType:
    """dqn_tune.runner.proxy, imported on first use: grpc is an extra (pip install 'dqn-tune[proxy]'), and slow to
    import for every command; ConfigError when it is missing."""
    try:
        return importlib.import_module("dqn_tune.runner.proxy")
    except ImportError as exc:
        if exc.name is None or exc.name.startswith("dqn_tune"):
            raise
        raise ConfigError(
            f"the storage proxy needs {exc.name}, which is not installed: pip install 'dqn-tune[proxy]'",
            field="storage",
        ) from None


def _open_proxy(
    url: str, address: tuple[str, int], retry: RetryPolicy, heartbeat_interval_s: int | None, grace_period_s: int
) -> SharedStorage:
    """The storage behind the storage proxy at `address`."""
    host, port = address
    opened: SharedStorage = proxy_module().open_proxy(
        host,
        port,
        url=url,
        where=repr(public_url(url)),
        retry=retry,
        heartbeat_interval_s=heartbeat_interval_s,
        grace_period_s=grace_period_s,
    )
    return opened


def _rdb_storage(url: str, *, create_tables: bool, pool_size: int) -> RDBStorage:
    """RDBStorage(url) keeping at most `pool_size` connections open (a server database), creating its tables only if
    asked; errors become one-line StorageErrors (their cause kept as context, for `retried`)."""
    engine_kwargs: dict[str, Any] = _connect_args(url)
    server = make_url(url).get_backend_name() != "sqlite"
    if server:  # Optuna's version check at construction holds two connections at once: one more, for it only
        engine_kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=1)
    with _guarded(url):
        try:
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=not create_tables)
        except RuntimeError as exc:  # Optuna's schema version check
            if "table schema" not in str(exc):
                raise
            raise StorageError(_schema_version_message(url, str(exc))) from None
        if server:
            use_engine(storage, sqlalchemy.create_engine(url, **{**engine_kwargs, "max_overflow": 0}))
        return storage


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
    raise StorageError(
        f"storage {public_url(url)!r} is not an Optuna database: it holds other tables ({listing}) "
        "and not Optuna's; dqn-tune leaves other applications' databases alone: give --storage a new "
        "or an Optuna database"
    )


def _schema_version_message(url: str, optuna_message: str) -> str:
    """One line for Optuna's schema version error: which versions, and what to do."""
    made_by = re.search(r"set up by optuna ([^)\s]+)", optuna_message)
    made = f"optuna {made_by.group(1)}" if made_by else "another optuna version"
    if "pip install -U optuna" in optuna_message:
        advice = (
            f"it was made by a newer optuna: install that version (pip install -U 'optuna>={made_by.group(1)}')"
            if made_by
            else "it was made by a newer optuna: pip install -U optuna"
        )
    else:
        advice = (
            f"back it up, then upgrade it with 'optuna storage upgrade --storage {public_url(url)}' "
            f"(older optuna versions can no longer read it afterwards)"
        )
    return (
        f"storage {public_url(url)!r} has the table schema of {made}, which optuna {optuna.__version__} "
        f"cannot use; {advice}"
    )


def _connect_args(url: str) -> dict[str, Any]:
    """Engine arguments: SQLite waits up to 60 s for another process's write lock; a PostgreSQL or MySQL server
    has CONNECT_TIMEOUT_S to answer a new connection; PostgreSQL shows each connection's process as its
    application_name ("dqn-tune host:pid", in pg_stat_activity)."""
    if sqlite_path(url):
        return {"connect_args": {"timeout": 60}}
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        return {
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": f"dqn-tune {process_name()}"}
        }
    if backend == "mysql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


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
    retry_timeout_s: float = RETRY_TIMEOUT_S
    """How long a transient storage error is retried before the command gives up."""

    def open(self) -> SharedStorage:
        """The storage, with heartbeats: a trial whose worker died is failed after the grace period and retried."""
        return open_storage(
            self.url,
            heartbeat_interval_s=self.heartbeat_interval_s,
            grace_period_s=self.grace_period_s,
            retry=RetryPolicy(self.retry_timeout_s),
        )


@contextmanager
def _named_lock(url: str, name: str) -> Iterator[None]:
    """A lock shared by the processes using the database at `url`, before its storage is open: on SQLite one file lock
    per database (whatever `name`), on PostgreSQL an advisory lock per name over its own connection."""
    path = sqlite_path(url)
    if path is not None:
        with sqlite_lock(path):
            yield
    elif make_url(url).get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, **_connect_args(url))
        try:
            with engine.connect() as connection, advisory_lock(connection, name):
                yield
        finally:
            engine.dispose()
    else:
        yield


def study_names(storage: SharedStorage) -> list[str]:
    """Names of the studies in `storage`, sorted."""
    return sorted(optuna.get_all_study_names(storage))


def load_study(storage: SharedStorage, study_name: str) -> optuna.Study:
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
