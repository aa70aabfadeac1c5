"""Faults with real processes and real signals: Ctrl-C / SIGTERM stop cleanly, a SIGKILLed worker's trial is failed
and retried at once, workers stop when their parent is killed, a lost machine's trial is retried by the next command."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.runner import attributes
from dqn_tune.runner.attributes import RETRY_OF
from dqn_tune.runner.storage import open_storage, study_names
from dqn_tune.runner.trial_loop import INTERRUPTED
from dqn_tune.tuning import records
from dqn_tune.tuning.progress import trials_text

TINY = [
    "--learning-starts",
    "100",
    "--eval-curve-episodes",
    "2",
    "--eval-episodes",
    "2",
    "--hidden-sizes",
    "32,32",
    "--batch-size",
    "32",
    "--trial-seeds",
    "1",
    "--no-artifacts",
    "--heartbeat-interval",
    "1",
    "--grace-period",
    "2",
    "--validate-top",
    "0",
]


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m dqn_tune` on tmp_path/studies/dqn_tune.db with a tiny config (`args` override it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dqn_tune", *TINY, *args],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def trials(tmp_path: Path) -> list[FrozenTrial]:
    if not (tmp_path / "studies" / "dqn_tune.db").exists():
        return []
    storage = open_storage(f"sqlite:///{tmp_path}/studies/dqn_tune.db", heartbeat=False)
    if "dqn-CartPole-v1" not in study_names(storage):
        return []
    return optuna.load_study(study_name="dqn-CartPole-v1", storage=storage).get_trials()


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def running(tmp_path: Path) -> int:
    return sum(t.state == TrialState.RUNNING for t in trials(tmp_path))


def training(tmp_path: Path) -> int:
    """Running trials that sampled their config and train it."""
    return sum(t.state == TrialState.RUNNING and records.CONFIG in t.system_attrs for t in trials(tmp_path))


def worker_pids(parent: int) -> list[int]:
    """Pids of the spawned worker processes of `parent` (not its multiprocessing resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def interrupt(tmp_path: Path, signum: int, workers: int, *, group: bool, again: bool = False) -> list[str]:
    """Signal a running `dqn-tune` (its process group, as Ctrl-C does, or the parent only, as `kill` does)
    mid-trial, and with `again` every 0.1 s until it has exited (an impatient user's Ctrl-Cs); check it stops
    cleanly, exits 130 after its summary and prints no traceback; return the command line to resume it."""
    args = ["--timesteps", "2500", "--workers", str(workers)]
    process = start(tmp_path, "--trials", "4", *args)
    wait_for(lambda: running(tmp_path) == workers, process)
    time.sleep(0.5)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):  # the process has just ended
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        if not again:
            break
        time.sleep(0.1)
    stdout, stderr = process.communicate(timeout=60)
    # 130, or death by SIGINT after the summary (a shell reports 130 for both): under load CPython sometimes ends
    # by re-raising SIGINT, as in test_data_safety's start-up test
    assert process.returncode in (130, -signal.SIGINT), (process.returncode, stderr)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert "(interrupted)" in stdout and "run the same command again to resume the study" in stdout
    assert (
        f"; {workers} failed because a command was interrupted (Ctrl-C or SIGTERM): they stay in the study and "
        "count towards --total-trials"
    ) in stdout
    interrupted = [t for t in trials(tmp_path) if t.state == TrialState.FAIL]
    assert len(interrupted) == workers and running(tmp_path) == 0
    assert all(t.user_attrs[attributes.FAIL_REASON] == INTERRUPTED for t in interrupted)
    return [sys.executable, "-m", "dqn_tune", *args, *TINY]


def test_sigterm_stops_cleanly_and_the_next_run_resumes(tmp_path: Path) -> None:
    command = interrupt(tmp_path, signal.SIGTERM, 1, group=False)
    before = len(trials(tmp_path))
    resumed = subprocess.run([*command, "--trials", "1"], cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f": {trials_text(before)} already" in resumed.stdout and len(trials(tmp_path)) == before + 1
    assert "; --trials 1 runs 1 more (--total-trials N stops the study at N trials in all)" in resumed.stdout


@pytest.mark.slow
def test_ctrl_c_again_and_again_to_the_process_group_stops_every_worker_and_exits_130(tmp_path: Path) -> None:
    interrupt(tmp_path, signal.SIGINT, 2, group=True, again=True)


@pytest.mark.slow
def test_sigterm_to_the_parent_stops_its_workers_cleanly(tmp_path: Path) -> None:
    interrupt(tmp_path, signal.SIGTERM, 2, group=False)


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie no longer does)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_sigkilled_worker_trial_is_failed_and_retried_at_once(tmp_path: Path) -> None:
    """No waiting for the heartbeat's grace period (600 s here): the parent sees its worker die."""
    process = start(tmp_path, "--trials", "2", "--timesteps", "3000", "--workers", "2", "--grace-period", "600")
    wait_for(lambda: training(tmp_path) == 2, process)
    victim = worker_pids(process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    study_trials = trials(tmp_path)
    [failed] = [t for t in study_trials if t.state == TrialState.FAIL]
    assert failed.user_attrs[attributes.FAIL_REASON] == f"its worker process (pid {victim}) was killed by SIGKILL"
    [retry] = [t for t in study_trials if t.system_attrs.get(RETRY_OF) == failed.number]
    assert retry.params == failed.params and attributes.FAIL_REASON not in retry.user_attrs
    assert len(study_trials) == 3 and all(t.state == TrialState.COMPLETE for t in study_trials if t is not failed)
    assert re.search(
        rf"a worker failed: worker \d \(pid {victim}\) was killed by SIGKILL; its trial {failed.number} "
        rf"was marked failed and retried as trial {retry.number} \(complete\)",
        stdout,
    ), stdout


@pytest.mark.slow
def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    process = start(tmp_path, "--trials", "6", "--timesteps", "20000", "--workers", "2", "--grace-period", "600")
    wait_for(lambda: running(tmp_path) == 2, process)
    workers = worker_pids(process.pid)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "orphaned workers still run"
        time.sleep(0.2)
    study_trials = trials(tmp_path)
    assert len(study_trials) == 2 and all(t.state == TrialState.FAIL for t in study_trials)
    assert all(t.user_attrs[attributes.FAIL_REASON] == INTERRUPTED for t in study_trials)


@pytest.mark.slow
def test_a_lost_machines_trial_is_failed_by_heartbeat_and_retried_by_the_next_command(tmp_path: Path) -> None:
    process = start(tmp_path, "--trials", "1", "--timesteps", "3000")
    wait_for(lambda: training(tmp_path) == 1, process)
    os.killpg(process.pid, signal.SIGKILL)  # the whole command at once, as when its machine is lost
    process.wait()
    assert running(tmp_path) == 1
    time.sleep(3)  # the grace period is 2 s
    resumed = subprocess.run(
        [sys.executable, "-m", "dqn_tune", *TINY, "--total-trials", "1", "--timesteps", "3000"],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    failed, retry = trials(tmp_path)
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[attributes.FAIL_REASON].startswith("no heartbeat ")  # failed by the heartbeat check
    assert retry.system_attrs[RETRY_OF] == failed.number and retry.params == failed.params
    assert attributes.FAIL_REASON not in retry.user_attrs
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
