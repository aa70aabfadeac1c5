"""Several machines on one PostgreSQL study: separate `dqn-tune` processes share it without losing a trial,
also when they all start at once on an empty database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune.runner.attributes import FAIL_REASON, RETRY_OF
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_queue import ask_trial, fail_trials_of, process_name
from dqn_tune.runner.workers import run_in_processes
from dqn_tune.tuning import records
from dqn_tune.tuning.records import COMMANDS_ATTR
from scripts.fleet import TINY as TINY_TUNE

POSTGRES_URL = os.environ.get("DQN_TUNE_TEST_POSTGRES_URL")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        POSTGRES_URL is None,
        reason="DQN_TUNE_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)",
    ),
]

TINY = ["--timesteps", "800", *TINY_TUNE]
LAUNCH = (
    "import runpy, sys, time; import dqn_tune.cli, dqn_tune.tuning.study; "
    "time.sleep(max(0.0, float(sys.argv[1]) - time.time())); sys.argv = ['dqn_tune', *sys.argv[2:]]; "
    "runpy.run_module('dqn_tune', run_name='__main__', alter_sys=True)"
)
"""`python -m dqn_tune ARGS` that imports its modules first, then waits for the wall-clock time in argv[1]:
processes launched with the same time reach the database at the same instant, whatever their import time."""


@pytest.fixture
def study_name() -> Iterator[str]:
    """A fresh study name, deleted from the server afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    if name in optuna.get_all_study_names(POSTGRES_URL):
        optuna.delete_study(study_name=name, storage=POSTGRES_URL)


def start_together(commands: list[list[str]], cwd: Path, delay_s: float = 10.0) -> list[subprocess.Popen[str]]:
    """Launch `python -m dqn_tune` with each argument list so that all of them open the storage at one instant."""
    at = str(time.time() + delay_s)
    return [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCH, at, *args],
            cwd=cwd,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args in commands
    ]


def test_three_processes_fill_a_postgres_study_to_exactly_its_total(tmp_path: Path, study_name: str) -> None:
    command = [
        sys.executable,
        "-m",
        "dqn_tune",
        "--storage",
        POSTGRES_URL,
        "--study-name",
        study_name,
        "--total-trials",
        "7",
        "--workers",
        "1",
        *TINY,
    ]  # three processes, one trial at a time each
    machines = [
        subprocess.Popen(command, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [machine.communicate(timeout=300) for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0, 0], [err for _, err in outputs]
    trials = optuna.load_study(study_name=study_name, storage=POSTGRES_URL).get_trials()
    assert len(trials) == 7
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    runs = [re.search(r"^study '.*': (\d+) trials? run", out, re.MULTILINE) for out, _ in outputs]
    assert sum(int(run.group(1)) for run in runs if run) == 7


def test_three_processes_start_at_once_on_an_empty_database(tmp_path: Path, empty_database: str) -> None:
    """Optuna issue 1092: each process creates the tables (and one the study) without tripping over the others."""
    args = ["--storage", empty_database, "--study-name", "fresh", "--trials", "1", *TINY]
    machines = start_together([args] * 3, tmp_path)
    outputs = [machine.communicate(timeout=300) for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0, 0], [err for _, err in outputs]
    study = optuna.load_study(study_name="fresh", storage=empty_database)
    assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    assert len(study.user_attrs[COMMANDS_ATTR]) == 3
    starts = [re.search(r"^(created|resuming) study 'fresh'", out, re.MULTILINE) for out, _ in outputs]
    assert sorted(start.group(1) for start in starts if start) == ["created", "resuming", "resuming"]


def test_two_budgets_started_at_once_on_an_empty_database_one_is_refused(tmp_path: Path, empty_database: str) -> None:
    """Creating the study, checking a command against it and recording its settings happen under one lock."""
    args = ["--storage", empty_database, "--study-name", "fresh", "--trials", "1", *TINY]
    machines = start_together([[*args, "--timesteps", "800"], [*args, "--timesteps", "1000"]], tmp_path)
    outputs = [machine.communicate(timeout=300) for machine in machines]
    assert sorted(machine.returncode for machine in machines) == [0, 2], outputs
    [refused] = [err for machine, (_, err) in zip(machines, outputs, strict=True) if machine.returncode == 2]
    assert "was run with total_timesteps = " in refused and refused.count("\n") == 1
    study = optuna.load_study(study_name="fresh", storage=empty_database)
    assert len(study.trials) == 1 and len(study.user_attrs[COMMANDS_ATTR]) == 1
    assert (
        records.trial_config(study.trials[0]).total_timesteps
        == study.user_attrs[records.SETTINGS_ATTR]["total_timesteps"]
    )


def ask_and_die(url: str, study_name: str) -> None:
    """A worker that takes a trial, samples it, and is killed."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(url, grace_period_s=600))
    trial = ask_trial(study)
    assert trial is not None
    trial.suggest_float("x", 0, 1)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_dead_workers_trial_is_failed_and_requeued_at_once(study_name: str) -> None:
    storage = open_storage(POSTGRES_URL, grace_period_s=600)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    lost: list[tuple[int, int | None]] = []

    def on_death(index: int, pid: int, how: str) -> None:
        lost.extend(fail_trials_of(study, process_name(pid), f"its worker {how}"))

    run_in_processes(ask_and_die, [(POSTGRES_URL, study_name)], on_death=on_death)
    failed, retry = study.get_trials()
    assert lost == [(0, 1)]
    assert failed.state == TrialState.FAIL and failed.user_attrs[FAIL_REASON] == "its worker was killed by SIGKILL"
    assert retry.state == TrialState.WAITING and retry.system_attrs[RETRY_OF] == 0 and retry.params == failed.params
    assert FAIL_REASON not in retry.user_attrs
