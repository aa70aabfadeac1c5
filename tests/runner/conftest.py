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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy

PGBIN = (sorted(glob.glob("/usr/lib/postgresql/*/bin")) or [None])[-1]
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
def silent_host() -> Iterator[int]:
    """The port of a server that accepts TCP connections and never sends a byte (a hung database host)."""
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
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def tune(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m dqn_tune tune ARGS` with the tiny flags, its output piped."""
    return subprocess.Popen([sys.executable, "-m", "dqn_tune", "tune", *TINY, *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
