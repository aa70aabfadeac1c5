"""A PostgreSQL server of a test's own (stopped, restarted or filled by the test without disturbing the shared one),
a socket that accepts connections and never answers, and a tiny tune command."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

PGBIN = (sorted(glob.glob("/usr/lib/postgresql/*/bin")) or [None])[-1]
POSTGRES_URL = os.environ.get("DQN_TUNE_TEST_POSTGRES_URL")
"""The test suite's shared server (.ci/run starts it); tests that need it skip without it."""
TINY = ["--learning-starts", "100", "--eval-freq", "200", "--eval-curve-episodes", "2", "--eval-episodes", "2",
        "--hidden-sizes", "16", "--seeds", "1", "--no-artifacts", "--validate-top", "0"]
"""Flags of a tune command whose trials take about a second per 1,000 steps."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateServer:
    """A PostgreSQL server in a temporary directory, run as the postgres user."""

    directory: Path
    port: int
    max_connections: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/optuna"

    def _pg(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._pg(f"{PGBIN}/pg_ctl", "-D", str(self.directory / "data"), "-l", str(self.directory / "log"), "-w", "-o",
                 f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
                 f"-c max_connections={self.max_connections}", "start")

    def stop(self) -> None:
        self._pg(f"{PGBIN}/pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateServer]:
    """A fresh server with database `optuna` and max_connections 15 (its superuser may use all of them)."""
    if PGBIN is None or os.geteuid() != 0:
        pytest.skip("needs Debian's postgresql package and root (as .ci/run has)")
    directory = Path(tempfile.mkdtemp(prefix="dqn-tune-pg."))  # not under pytest's root-only folders
    os.chown(directory, pwd.getpwnam("postgres").pw_uid, -1)
    server = PrivateServer(directory, free_port(), max_connections=15)
    server._pg(f"{PGBIN}/initdb", "-D", str(directory / "data"), "-U", "postgres", "--auth=trust")
    server.start()
    try:
        engine = sqlalchemy.create_engine(server.url.replace("/optuna", "/postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("CREATE DATABASE optuna"))
        engine.dispose()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory)


@pytest.fixture
def empty_database() -> Iterator[str]:
    """The URL of a new, empty database on the shared test server, dropped afterwards."""
    if POSTGRES_URL is None:
        pytest.skip("DQN_TUNE_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    name = f"dqn_tune_test_{uuid.uuid4().hex}"
    server = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
    with server.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


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


def tune(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m dqn_tune tune ARGS` with the tiny flags, its output piped."""
    return subprocess.Popen([sys.executable, "-m", "dqn_tune", "tune", *TINY, *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


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
