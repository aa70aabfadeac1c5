"""Start-up: the commands that only print import neither torch nor optuna; a Ctrl-C while workers start is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEAVY = ("torch", "optuna", "gymnasium", "sqlalchemy", "scipy", "numpy")


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["presets"],
        ["presets", "--env", "Acrobot-v1"],
        ["tune", "--help"],
        ["validate", "--help"],
        ["ablate", "--help"],
    ],
)
def test_commands_that_only_print_load_no_heavy_library(args: list[str]) -> None:
    code = (
        "import contextlib, io, sys\nfrom dqn_tune.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    code = main({args!r})\n"
        f"print(code, sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split(maxsplit=1) == ["0", "[]\n"], result.stdout + result.stderr


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.slow
def test_ctrl_c_while_workers_start_is_one_line_and_no_worker_failure(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group: here while the two workers import torch and optuna."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dqn_tune",
            "--trials",
            "4",
            "--workers",
            "2",
            "--timesteps",
            "600",
            "--learning-starts",
            "100",
            "--hidden-sizes",
            "16",
            "--trial-seeds",
            "1",
            "--no-artifacts",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(_children(process.pid)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # the workers are importing (seconds under spawn)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err and "a worker failed" not in out + err, out + err
    assert process.returncode in (130, -signal.SIGINT), (process.returncode, err)


@pytest.mark.parametrize("args", [["presets"], ["presets", "--env", "MountainCar-v0"]])
def test_a_reader_that_stops_early_ends_the_output_without_a_traceback(args: list[str]) -> None:
    """`dqn-tune presets | head -1`: the pipe is closed before the command writes, so every write meets EPIPE."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dqn_tune", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141 and err == "", err
