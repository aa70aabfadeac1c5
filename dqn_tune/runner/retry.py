"""Transient storage errors, retried with bounded exponential backoff.

A study shared by many processes meets errors that pass: a database server restarting, too many
clients for a moment, a dropped connection, a storage proxy being restarted. `retried` runs a storage
call again after 0.5 s, 1 s, 2 s, ... (at most MAX_DELAY_S apart), printing one line per wait, until
the error has lasted `RetryPolicy.timeout_s`; then it raises a StorageError that names the real cause.
Any other error (a wrong password, an unknown database, a full disk, a damaged file) is raised at once.

Written here because neither library retries: SQLAlchemy's `pool_pre_ping` only replaces a connection
that died while idle in its pool, and Optuna turns every database error of a session into one
StorageInternalError ("An exception is raised during the commit ...") that hides the cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from dqn_tune.errors import StorageError
from dqn_tune.runner.defaults import RETRY_TIMEOUT_S
from dqn_tune.runner.interrupts import raise_if_interrupted

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 8.0
"""Longest wait between two tries: a server back after a restart is found within this."""
SLEEP_SLICE_S = 0.25
"""A wait is slept in slices this long, so that a stop signal held back by `deferred_interrupts` ends it soon."""

TRANSIENT_TEXTS = (
    # PostgreSQL and libpq
    "too many clients",
    "remaining connection slots are reserved",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "terminating connection due to",
    "server closed the connection unexpectedly",
    "connection refused",
    "could not receive data from server",
    "could not send data to server",
    "no connection to the server",
    "connection already closed",
    "ssl syscall error",
    "timeout expired",
    "connection timed out",
    "server conn crashed",
    # MySQL
    "lost connection to mysql server",
    "mysql server has gone away",
    "too many connections",
    "can't connect to mysql server",
    # SQLite: another process's write lock held past the driver's own wait
    "database is locked",
)
"""Lower-case fragments of driver messages that mean "try again later" (connection-time errors carry no SQLSTATE)."""
TRANSIENT_GRPC_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
"""gRPC status codes of a storage proxy that is restarting, unreachable for a moment, or whose database is."""


class TransientError(Exception):
    """An error its raiser knows to be transient (e.g. no answer from a storage proxy yet)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long transient storage errors are retried (picklable: worker processes get the command's)."""

    timeout_s: float = RETRY_TIMEOUT_S
    """Give up once an error has lasted this long (0: never retry)."""


DEFAULT_RETRY = RetryPolicy()


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or while handling (`raise ... from None` keeps the latter)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _grpc_code(exc: BaseException) -> str | None:
    """The status code name of a gRPC error (grpc is imported only where a proxy is used)."""
    code = getattr(exc, "code", None)
    if not callable(code) or type(exc).__module__.split(".")[0] != "grpc":
        return None
    try:
        return str(getattr(code(), "name", ""))
    except Exception:  # noqa: BLE001 - not a call's error after all
        return None


def cause(exc: BaseException) -> str:
    """The first line of what the database, driver or proxy said, from the innermost exception that says it."""
    text = ""
    for link in chain(exc):
        details = getattr(link, "details", None)
        said = details() if callable(details) and _grpc_code(link) else str(getattr(link, "orig", None) or link)
        if said and said.strip():
            text = said
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first.removeprefix("Exception calling application: ")


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is a storage error worth retrying."""
    for link in chain(exc):
        if isinstance(link, TransientError) or getattr(
            link, "connection_invalidated", False
        ):  # SQLAlchemy saw the connection drop
            return True
        code = _grpc_code(link)
        if code in TRANSIENT_GRPC_CODES:
            return True
        details = getattr(link, "details", None)
        text = (details() if callable(details) and code else str(link)).lower()
        if any(fragment in text for fragment in TRANSIENT_TEXTS):
            return True
    return False


def retried(call: Callable[[], T], *, policy: RetryPolicy, where: str) -> T:
    """`call()`, run again while it raises a transient error, for at most `policy.timeout_s` seconds.

    Each wait prints one line naming `where` (the storage, password hidden) and the cause; a stop signal
    (SIGINT/SIGTERM, also one held back inside `deferred_interrupts`) ends the waiting with KeyboardInterrupt.
    After the bound, a StorageError names the cause and the flag that sets the bound.
    """
    first_failure: float | None = None
    delay = FIRST_DELAY_S
    while True:
        attempt = time.monotonic()
        try:
            result = call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            first_failure = attempt if first_failure is None else first_failure  # it failed since it was tried
            lasted = time.monotonic() - first_failure
            if lasted + delay > policy.timeout_s:
                raise StorageError(
                    f"storage {where}: {cause(exc)} (failing for {lasted:.0f}s; --storage-retry-timeout "
                    f"{policy.timeout_s:g} sets how long it is retried)"
                ) from exc
            LOGGER.warning(
                "storage %s: %s; retrying in %.1fs (gives up after %gs)", where, cause(exc), delay, policy.timeout_s
            )
            pause(delay)
            delay = min(2 * delay, MAX_DELAY_S)
            continue
        if first_failure is not None:
            LOGGER.warning("storage %s: answering again after %.1fs", where, time.monotonic() - first_failure)
        return result


def pause(seconds: float) -> None:
    """Sleep, raising KeyboardInterrupt within SLEEP_SLICE_S of a stop signal (also one held back)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        raise_if_interrupted()
        time.sleep(min(left, SLEEP_SLICE_S))
    raise_if_interrupted()
