"""A PostgreSQL server of a module's own (stopped, restarted or filled by its tests without disturbing the shared
one), a socket that accepts connections and never answers, the trials of a study."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from scripts.fleet import PostgresServer, can_run_postgres, postgres_server


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    """A fresh server with database `optuna` and max_connections 15 (its superuser may use all of them)."""
    if not can_run_postgres():
        pytest.skip("needs Debian's postgresql package and root (as .ci/run has)")
    with postgres_server(max_connections=15) as server:
        yield server


@dataclass
class SilentHost:
    """A server that accepts TCP connections and never sends a byte (a hung database host)."""

    port: int
    accepted: list[socket.socket]


@pytest.fixture
def silent_host() -> Iterator[SilentHost]:
    """A SilentHost on 127.0.0.1, listening until the test ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield SilentHost(int(listener.getsockname()[1]), held)
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def stored_trials(url: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read over one connection closed afterwards (the server has few)."""
    storage = RDBStorage(url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool})
    try:
        if study_name not in optuna.get_all_study_names(storage):
            return []
        return optuna.load_study(study_name=study_name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def wait_until_training(url: str, study_name: str, process: object, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(t.state == TrialState.RUNNING and t.intermediate_values for t in stored_trials(url, study_name)):
        assert process.poll() is None, process.communicate()  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "no trial started training"
        time.sleep(0.2)
