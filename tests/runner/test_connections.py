"""How many PostgreSQL connections a command holds: one per process (its pool), and one more only while a process
holds the study lock; measured from pg_stat_activity, where each connection names its process."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy

from tests.runner.conftest import tune

pytestmark = pytest.mark.slow


TRAINING = sqlalchemy.text(
    "SELECT a.value_json FROM trial_system_attributes a JOIN trials t ON t.trial_id = a.trial_id "
    "WHERE a.key = 'worker' AND t.state = 'RUNNING' AND EXISTS "
    "(SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id)")
"""The processes ('host:pid') whose trial is training: running, with a learning-curve point reported."""
CONNECTIONS = sqlalchemy.text(
    "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND backend_type = 'client backend' AND application_name LIKE 'dqn-tune %' GROUP BY 1")


def sample(url: str, stop: threading.Event, samples: list[tuple[set[str], dict[str, int]]]) -> None:
    """Every 20 ms: which processes train, and how many connections each process holds (each sample in a
    transaction of its own: PostgreSQL shows one snapshot of its statistics per transaction)."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        while not stop.is_set():
            try:
                training = {json.loads(row[0]) for row in connection.execute(TRAINING)}
            except sqlalchemy.exc.ProgrammingError:  # no Optuna tables yet
                training = set()
            samples.append((training, dict(connection.execute(CONNECTIONS).all())))
            time.sleep(0.02)
    engine.dispose()


def test_a_training_process_holds_one_connection(tmp_path: Path, empty_database: str) -> None:
    """Issue 22 item 1, measured: while its trial trains, a process holds its pool's one connection (the study lock
    takes a second one only while a process asks for a trial)."""
    url = empty_database
    samples: list[tuple[set[str], dict[str, int]]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(url, stop, samples))
    sampler.start()
    try:
        process = tune(tmp_path, "--storage", url, "--trials", "6", "--workers", "2", "--timesteps", "1500")
        out, err = process.communicate(timeout=300)
    finally:
        stop.set()
        sampler.join()
    assert process.returncode == 0, err
    while_training = [(worker, held) for training, held in samples for worker in training]
    assert len({worker for worker, _ in while_training}) == 2 and len(while_training) > 20, samples[-5:]
    assert {(held.get(f"dqn-tune {worker}"), held.get(f"dqn-tune {worker} study lock")) for worker, held
            in while_training} == {(1, None)}
    processes = {name.removesuffix(" study lock") for _, held in samples for name in held}
    assert len(processes) == 3  # the command and its two workers
