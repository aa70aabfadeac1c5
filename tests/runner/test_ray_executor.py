"""`tune --executor ray`: flags refused in one line, a one-line error without Ray, and on a real local Ray cluster a
worker killed mid-trial whose trial is failed and retried while the quota holds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from dqn_tune.cli import main
from dqn_tune.runner import attributes
from scripts.fleet import tune
from tests.runner.conftest import stored_trials

BAD = [
    (["--worker-gpus", "0.5"], "--worker-gpus 0.5 needs --device cuda (workers training on cpu claim no GPU)"),
    (["--executor", "local", "--ray-address", "auto"], "--ray-address 'auto' is for --executor ray"),
    (["--worker-gpus", "1.5"], "argument --worker-gpus: invalid value '1.5'; expected a fraction of a GPU"),
    (
        ["--executor", "local", "--workers", "9999"],
        "argument --workers: invalid value '9999'; expected an integer from 1 to ",
    ),
]


@pytest.mark.parametrize(("flags", "message"), BAD)
def test_flags_that_do_not_go_together_are_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    executor = [] if "--executor" in flags else ["--executor", "ray"]
    code = main(["tune", "--trials", "1", "--storage", f"sqlite:///{tmp_path}/s.db", *executor, *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s.db").exists()


def test_without_ray_the_ray_executor_is_one_line(tmp_path: Path) -> None:
    hide_ray = (
        "import sys; sys.modules['ray'] = None; from dqn_tune.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )  # `import ray` fails as it does where Ray is not installed
    result = subprocess.run(
        [sys.executable, "-c", hide_ray, "tune", "--executor", "ray", "--trials", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr == (
        "dqn-tune: error: --executor ray needs ray, which is not installed: pip install 'dqn-tune[ray]'\n"
    )


@pytest.mark.slow
def test_a_ray_worker_killed_mid_trial_has_its_trial_failed_and_retried_within_the_quota(tmp_path: Path) -> None:
    """A local Ray cluster of 2 CPUs started by the command; one worker process SIGKILLed while it trains."""
    database = f"sqlite:///{tmp_path}/s.db"
    process = tune(
        tmp_path,
        "--storage",
        database,
        "--study-name",
        "s",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--trials",
        "4",
        "--timesteps",
        "3000",
        "--eval-freq",
        "500",
    )
    deadline = time.monotonic() + 240
    while (
        len(
            training := [
                t for t in stored_trials(database, "s") if t.state == TrialState.RUNNING and t.intermediate_values
            ]
        )
        < 1
    ):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    victim = training[0]
    host, pid = victim.system_attrs[attributes.WORKER].rsplit(":", 1)
    os.kill(int(pid), signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err  # a worker died: reported, as with local processes
    trials = stored_trials(database, "s")
    [failed] = [t for t in trials if t.state == TrialState.FAIL]
    [retry] = [t for t in trials if t.system_attrs.get(attributes.RETRY_OF) == victim.number]
    assert failed.number == victim.number and retry.params == failed.params and retry.state == TrialState.COMPLETE
    assert failed.user_attrs[attributes.FAIL_REASON].startswith(f"its worker process (pid {pid} on {host}) was lost (")
    assert len(trials) == 5 and sum(t.state == TrialState.COMPLETE for t in trials) == 4  # 4 counted, 1 retry
    assert "study 's': 4 trials run" in out
    assert re.search(
        rf"a worker failed: worker \d \(pid {pid} on {re.escape(host)}\) was lost \(.*\); its trial "
        rf"{failed.number} was marked failed and retried as trial {retry.number} \(complete\)",
        out,
    ), out
