"""How many PostgreSQL connections a command holds: one per process (its pool), and one more only while a process
holds the study lock; measured from pg_stat_activity, where each connection names its process."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.fleet import sampling_connections, tune

pytestmark = pytest.mark.slow


def test_a_training_process_holds_one_connection(tmp_path: Path, empty_database: str) -> None:
    """Issue 22 item 1, measured: while its trial trains, a process holds its pool's one connection (the study lock
    takes a second one only while a process asks for a trial)."""
    with sampling_connections(empty_database) as found:
        process = tune(tmp_path, "--storage", empty_database, "--trials", "5", "--workers", "2", "--timesteps", "1500")
        _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    samples = [
        (training, {name: count for name, count in held.items() if name.startswith("dqn-tune ")})
        for training, held in found.samples
    ]
    while_training = [(worker, held) for training, held in samples for worker in training]
    assert len({worker for worker, _ in while_training}) == 2 and len(while_training) > 20, samples[-5:]
    assert {
        (held.get(f"dqn-tune {worker}"), held.get(f"dqn-tune {worker} study lock")) for worker, held in while_training
    } == {(1, None)}
    processes = {name.removesuffix(" study lock") for _, held in samples for name in held}
    assert len(processes) == 3  # the command and its two workers
