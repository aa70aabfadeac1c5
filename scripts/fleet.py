"""What the scale-out benchmarks (scripts/bench_*.py) and tests/runner start and watch: a PostgreSQL server of their
own, a storage proxy, samples of pg_stat_activity, tiny dqn-tune commands.

A server of one's own may be stopped, restarted or filled without disturbing anyone else's; it needs Debian's
postgresql package and root (initdb runs as the postgres user), as on CI and the development machines.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy

PGBIN = (sorted(glob.glob("/usr/lib/postgresql/*/bin")) or [None])[-1]
"""Debian's PostgreSQL programs (the newest installed version), or None."""
TINY = [
    "--learning-starts",
    "100",
    "--eval-freq",
    "200",
    "--eval-curve-episodes",
    "2",
    "--eval-episodes",
    "2",
    "--hidden-sizes",
    "16",
    "--trial-seeds",
    "1",
    "--no-artifacts",
    "--validate-top",
    "0",
]
"""Flags of a tune command whose trials train for about a CPU-second per 1,000 steps (give --timesteps)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A PostgreSQL server in a directory of its own, run as the postgres user, with database `optuna`."""

    directory: Path
    port: int
    max_connections: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/optuna"

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", f"{PGBIN}/{program}", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self._pg(
            "pg_ctl",
            "-D",
            str(self.directory / "data"),
            "-l",
            str(self.directory / "log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
            f"-c max_connections={self.max_connections}",
            "start",
        )

    def stop(self) -> None:
        """`pg_ctl -m fast stop`: clients are disconnected, nothing is lost."""
        self._pg("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")


def can_run_postgres() -> bool:
    """Whether this machine can start a PostgreSQL server of its own here."""
    return PGBIN is not None and os.geteuid() == 0


@contextmanager
def postgres_server(*, max_connections: int = 100, port: int | None = None) -> Iterator[PostgresServer]:
    """A fresh server (the commands of /work/shared/FACTS.md) on `port` (default: a free one), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="dqn-tune-pg."))  # postgres must reach it: not under a root-only folder
    os.chown(directory, pwd.getpwnam("postgres").pw_uid, -1)
    server = PostgresServer(directory, port or free_port(), max_connections)
    try:
        server._pg("initdb", "-D", str(directory / "data"), "-U", "postgres", "--auth=trust")
        server.start()
        try:
            engine = sqlalchemy.create_engine(
                server.url.replace("/optuna", "/postgres"), isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool
            )
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("CREATE DATABASE optuna"))
            engine.dispose()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def storage_proxy(url: str, *, port: int = 0) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`dqn-tune storage-proxy --storage URL` in a process of its own: ("grpc://127.0.0.1:PORT", the process); it gets
    SIGTERM afterwards and must then exit 0 without a traceback (RuntimeError otherwise)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dqn_tune", "storage-proxy", "--storage", url, "--port", str(port)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"workers use --storage (grpc://\S+)", line)
        if found is None:
            raise RuntimeError(f"the storage proxy did not start: {line}{process.communicate()[1]}")
        yield found.group(1), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        err = process.communicate(timeout=60)[1]
        if process.returncode != 0 or "Traceback" in err:
            raise RuntimeError(f"the storage proxy exited {process.returncode}: {err}")


def tune(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m dqn_tune tune` with the TINY flags and `args` (in environment `env`: default this one's), its output
    piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "dqn_tune", "tune", *TINY, *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


TRAINING = sqlalchemy.text(
    "SELECT a.value_json FROM trial_system_attributes a JOIN trials t ON t.trial_id = a.trial_id "
    "WHERE a.key = 'worker' AND t.state = 'RUNNING' AND EXISTS "
    "(SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id)"
)
"""The processes ('host:pid') whose trial is training: running, with a learning-curve point reported."""
CONNECTIONS = sqlalchemy.text(
    "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1"
)


@dataclass
class ConnectionSamples:
    """Samples of one database's connections: per sample, the processes training and the connections by
    application_name (dqn-tune names each "dqn-tune host:pid", its study lock's "... study lock")."""

    samples: list[tuple[set[str], dict[str, int]]] = field(default_factory=list)

    @property
    def peak_total(self) -> int:
        return max((sum(held.values()) for _, held in self.samples), default=0)

    def peak_of(self, pids: set[int], *, others: bool = False) -> int:
        """The most connections held at once by the dqn-tune processes `pids` (with `others`: by every other)."""

        def chosen(name: str) -> bool:
            of_pids = name.startswith("dqn-tune ") and int(name.split(":")[-1].split()[0]) in pids
            return of_pids != others

        return max((sum(count for name, count in held.items() if chosen(name)) for _, held in self.samples), default=0)

    def peak_by_name(self) -> dict[str, int]:
        peaks: dict[str, int] = defaultdict(int)
        for _, held in self.samples:
            for name, count in held.items():
                peaks[name] = max(peaks[name], count)
        return dict(peaks)


@contextmanager
def repeating(step: Callable[[], None], every_s: float) -> Iterator[None]:
    """Call `step()` every `every_s` seconds in a thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            step()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def sampling_connections(url: str, every_s: float = 0.02) -> Iterator[ConnectionSamples]:
    """Sample the connections to the database of `url` (and which processes train) while the block runs; each sample
    in a transaction of its own (PostgreSQL shows one snapshot of its statistics per transaction)."""
    found = ConnectionSamples()
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:

        def sample() -> None:
            try:
                training = {json.loads(row[0]) for row in connection.execute(TRAINING)}
            except sqlalchemy.exc.ProgrammingError:  # no Optuna tables yet
                training = set()
            found.samples.append(
                (training, {name or "(other)": count for name, count in connection.execute(CONNECTIONS).all()})
            )

        with repeating(sample, every_s):
            yield found
    engine.dispose()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def pss_mib(pid: int) -> float:
    """The proportional set size of a process (its share of pages it shares with others), MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def sampling_memory(every_s: float = 1.0) -> Iterator[dict[str, float]]:
    """The peak summed PSS (MiB) of this process's descendants while the block runs, and how many there were then."""
    peak = {"pss_mib": 0.0, "processes": 0}

    def sample() -> None:
        pids = descendants(os.getpid())
        total = sum(pss_mib(pid) for pid in pids)
        if total > peak["pss_mib"]:
            peak.update(pss_mib=round(total), processes=len(pids))

    with repeating(sample, every_s):
        yield peak


def wait_all(processes: Sequence[subprocess.Popen[str]], timeout_s: float) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each process, once all have ended."""
    deadline = time.monotonic() + timeout_s
    outputs = [process.communicate(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    return [(process.returncode, out, err) for process, (out, err) in zip(processes, outputs, strict=True)]
