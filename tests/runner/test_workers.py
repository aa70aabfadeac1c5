"""Worker processes: results and failures come back; queued trials never run twice on SQLite."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune.errors import ConfigError
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_loop import TrialQuota, run_trials
from dqn_tune.runner.workers import WorkerError, run_in_processes

QUEUED = 40


def square_after_touching(x: int, directory: str) -> int:
    Path(directory, f"ran-{x}").touch()
    return x * x


def fail_with(kind: str) -> None:
    if kind == "config":
        raise ConfigError("batch_size = 0 is invalid: expected an integer >= 1")
    if kind == "bug":
        raise ValueError("a bug in the worker")
    os.kill(os.getpid(), signal.SIGKILL)


def square_or_die(x: int) -> int:
    if x < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def drain_queue(url: str, study_name: str, log: str) -> None:
    """Run trials until the study's QUEUED trials are done, logging every trial number it runs."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(url))

    def objective(trial: optuna.Trial) -> float:
        with open(log, "a") as handle:
            handle.write(f"{trial.number}\n")
        time.sleep(0.01)
        return trial.suggest_int("x", 0, QUEUED)

    run_trials(study, objective, TrialQuota(None), total_trials=QUEUED)


def test_results_come_back_in_order(tmp_path: Path) -> None:
    assert run_in_processes(square_after_touching, [(3, str(tmp_path)), (4, str(tmp_path))]) == [9, 16]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ran-3", "ran-4"]


def test_project_errors_are_re_raised_as_themselves() -> None:
    with pytest.raises(ConfigError, match="batch_size = 0 is invalid"):
        run_in_processes(fail_with, [("config",)])


def test_other_errors_become_worker_errors_with_the_traceback() -> None:
    with pytest.raises(WorkerError, match=r"(?s)worker 0 \(pid \d+\) failed:.*ValueError: a bug in the worker"):
        run_in_processes(fail_with, [("bug",)])


def test_a_killed_worker_is_reported_with_its_signal() -> None:
    with pytest.raises(WorkerError, match=r"worker 0 \(pid \d+\) was killed by SIGKILL"):
        run_in_processes(fail_with, [("kill",)])


def test_a_dead_worker_goes_to_on_death_at_once_and_is_replaced() -> None:
    deaths: list[tuple[int, str]] = []

    def replace(index: int, pid: int, how: str) -> tuple[int]:
        deaths.append((index, how))
        return (5,)

    assert run_in_processes(square_or_die, [(-1,), (3,)], on_death=replace) == [None, 9, 25]
    assert deaths == [(0, "was killed by SIGKILL")]


def test_four_sqlite_workers_never_run_a_queued_trial_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/queue.db"
    study = optuna.create_study(study_name="queue", storage=open_storage(url), direction="maximize")
    for x in range(QUEUED):
        study.enqueue_trial({"x": x})
    log = tmp_path / "ran.log"
    run_in_processes(drain_queue, [(url, "queue", str(log))] * 4)
    ran = [int(line) for line in log.read_text().split()]
    assert sorted(ran) == list(range(QUEUED))
    trials = study.get_trials()
    assert len(trials) == QUEUED and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.value for t in trials) == list(range(QUEUED))
