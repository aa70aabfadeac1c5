"""Several machines on one PostgreSQL study: separate `dqn-tune` processes share it without losing a trial."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

POSTGRES_URL = os.environ.get("DQN_TUNE_TEST_POSTGRES_URL")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(POSTGRES_URL is None, reason="DQN_TUNE_TEST_POSTGRES_URL is not set "
                                 "(.ci/run starts a PostgreSQL server and sets it)")]


@pytest.fixture
def study_name() -> Iterator[str]:
    """A fresh study name, deleted from the server afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    if name in optuna.get_all_study_names(POSTGRES_URL):
        optuna.delete_study(study_name=name, storage=POSTGRES_URL)


def test_three_processes_fill_a_postgres_study_to_exactly_its_total(tmp_path: Path, study_name: str) -> None:
    command = [sys.executable, "-m", "dqn_tune", "--storage", POSTGRES_URL, "--study-name", study_name,
               "--total-trials", "7", "--timesteps", "800", "--learning-starts", "100", "--eval-freq", "200",
               "--eval-curve-episodes", "2", "--eval-episodes", "2", "--hidden-sizes", "16", "--seeds", "1"]
    machines = [subprocess.Popen(command, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(3)]
    outputs = [machine.communicate(timeout=300) for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0, 0], [err for _, err in outputs]
    trials = optuna.load_study(study_name=study_name, storage=POSTGRES_URL).get_trials()
    assert len(trials) == 7
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    runs = [re.search(r"^study '.*': (\d+) trials run", out, re.MULTILINE) for out, _ in outputs]
    assert sum(int(run.group(1)) for run in runs if run) == 7
