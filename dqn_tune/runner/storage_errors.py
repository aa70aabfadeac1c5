"""What a storage fault means, as one line: a full disk, a damaged database, or another database error.

A fault reaches the tool through several layers (sqlite3 or psycopg2, then SQLAlchemy, then Optuna's
StorageInternalError, whose own text blames "invalid data in the commit, e.g. exceeding max length"
whatever happened), or as an OSError from a file written beside the storage (trial artifacts).
`storage_error` follows the exception's causes to the driver's or the OS's own error and words it
once: the cause, the storage (password hidden) or the file, and what to do. Anything else is not a
storage fault.
"""

from __future__ import annotations

import errno
import shlex
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from dqn_tune.errors import StorageError, shown
from dqn_tune.runner.urls import public_url, sqlite_path

NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""OSError numbers of a write that found no room: a full disk, a used-up quota, the file size limit (ulimit -f)."""
DISK_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")
"""How SQLite and PostgreSQL say that the disk is full."""
MALFORMED_TEXTS = ("database disk image is malformed", "malformed database schema")
"""How SQLite says that a database file is damaged."""
NOT_A_DATABASE = "file is not a database"
"""SQLite's words for a file whose header is not an SQLite header: damaged, once the file was opened as a database."""
MAX_CAUSES = 32
"""How many causes `_root_cause` follows (a chain can loop)."""
RESUME = "then run the same command again: the study resumes where it stopped"


def storage_error(exc: BaseException, *, url: str, opening: bool = False) -> StorageError | None:
    """The StorageError that `exc` means for the storage at `url` (`opening`: raised while opening it), or None
    when `exc` is not a storage fault. A StorageError is returned as it is."""
    if isinstance(exc, StorageError):
        return exc
    root = _root_cause(exc)
    if root is None:
        return None
    where = f"storage {public_url(url)!r}"
    reason = _first_line(root)
    lowered = reason.lower()
    if isinstance(root, OSError):
        if root.errno == errno.EFBIG:
            return StorageError(
                f"cannot write {_file_of(root)}: {root.strerror} (the file size limit, ulimit -f, "
                f"was reached); raise the limit, {RESUME}"
            )
        return StorageError(
            f"disk full: cannot write {_file_of(root)} ({root.strerror}); free space on its disk, {RESUME}"
        )
    if any(text in lowered for text in DISK_FULL_TEXTS):
        return StorageError(f"disk full: cannot write to {where} ({reason}); free space on its disk, {RESUME}")
    path = sqlite_path(url)
    if path is not None and (
        any(text in lowered for text in MALFORMED_TEXTS) or (NOT_A_DATABASE in lowered and not opening)
    ):
        return StorageError(
            f"{where} is damaged ({reason}): restore {str(path)!r} from a backup, or copy out what SQLite can still "
            f"read (sqlite3 {shlex.quote(str(path))} .recover | sqlite3 recovered.db) and use "
            "--storage sqlite:///recovered.db"
        )
    return StorageError(f"{'cannot open' if opening else 'error in'} {where}: {reason}")


@contextmanager
def storage_faults(url: str, *, opening: bool = False) -> Iterator[None]:
    """Inside the block, a storage fault is raised as its one-line StorageError (see `storage_error`); other
    exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        error = storage_error(exc, url=url, opening=opening)
        if error is None or error is exc:
            raise
        raise error from exc


def is_storage_fault(exc: BaseException) -> bool:
    """Whether `exc` is a storage fault: a database error, or an OSError of a write that found no room."""
    return isinstance(exc, StorageError) or _root_cause(exc) is not None


def _root_cause(exc: BaseException) -> BaseException | None:
    """The exception that says what really happened: following `exc`'s causes (`raise ... from`) and the driver's
    error under a SQLAlchemy error, the innermost database or no-room OSError; None if there is none.

    Only causes are followed, not the exceptions being handled when `exc` was raised (`__context__`): an error
    raised while handling a database error is not a database error."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    for _ in range(MAX_CAUSES):
        if current is None:
            break
        driver_error = current.orig if isinstance(current, DBAPIError) else None
        if isinstance(current, (SQLAlchemyError, StorageInternalError, sqlite3.Error)) or (
            isinstance(current, OSError) and current.errno in NO_ROOM_ERRNOS
        ):
            found.append(current)
        if isinstance(driver_error, BaseException):
            found.append(driver_error)
        current = current.__cause__
    return found[-1] if found else None


def _file_of(exc: OSError) -> str:
    return shown(str(exc.filename)) if exc.filename else "a file"


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's text (SQLAlchemy appends the SQL and a link), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
