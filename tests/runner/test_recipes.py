"""The Slurm and Kubernetes recipes of docs/scale-out.md: their commands parse with dqn-tune's own parser, and run
here: the proxy's command serves a SQLite file, and the workers' commands of both recipes (with the tiny budget flags
appended, which win as argparse takes the last occurrence) fill one study through it."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from dqn_tune.cli import build_parser
from scripts.fleet import TINY

pytestmark = pytest.mark.slow
PAGE = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"


def recipe(language: str, first_line: str) -> str:
    """The code block of docs/scale-out.md in `language` that starts with `first_line`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", PAGE.read_text(), re.MULTILINE | re.DOTALL)
    [found] = [block for block in blocks if block.startswith(first_line)]
    return found


def slurm_command() -> list[str]:
    """The `srun dqn-tune ...` command of the sbatch script, continuation lines joined (still with its $VARIABLES)."""
    script = recipe("bash", "#!/bin/bash")
    assert re.search(r"^#SBATCH --array=\d+-\d+$", script, re.MULTILINE) and "--requeue" in script
    line = re.search(r"^srun (dqn-tune .*?)(?<!\\)$", script.replace("\\\n", " "), re.MULTILINE)
    assert line is not None
    return shlex.split(line.group(1))


def kubernetes() -> tuple[list[str], list[str]]:
    """The proxy Deployment's command and the worker Job's command."""
    documents = {
        document["kind"]: document for document in yaml.safe_load_all(recipe("yaml", "# dqn-tune on Kubernetes"))
    }
    job = documents["Job"]["spec"]
    assert job["completionMode"] == "Indexed" and job["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert documents["Service"]["spec"]["ports"][0]["port"] == 13000
    [proxy] = documents["Deployment"]["spec"]["template"]["spec"]["containers"]
    [worker] = job["template"]["spec"]["containers"]
    return proxy["command"], worker["command"]


def substituted(command: list[str], values: dict[str, str]) -> list[str]:
    """`command` without its program name, $VAR / "$(VAR)" replaced as the shell or Kubernetes would."""
    return [
        re.sub(r"\$\(?(\w+)\)?|\$\{(\w+)\}", lambda m: values[m.group(1) or m.group(2)], word) for word in command[1:]
    ]


def test_the_recipes_commands_parse_and_share_one_study_through_the_proxy(tmp_path: Path) -> None:
    proxy_command, job_command = kubernetes()
    slurm = slurm_command()
    parser = build_parser()
    for command in (proxy_command, job_command, slurm):
        assert command[0] == "dqn-tune"
        parser.parse_args(
            substituted(
                command,
                {"DATABASE_URL": "sqlite:///x.db", "DQN_TUNE_STORAGE": "grpc://h:1", "SLURM_CPUS_PER_TASK": "4"},
            )
        )
    database = f"sqlite:///{tmp_path}/study.db"
    served = substituted(proxy_command, {"DATABASE_URL": database})
    served[served.index("--port") + 1] = "0"  # any free port
    served[served.index("--host") + 1] = "127.0.0.1"  # this test's machine only
    proxy = subprocess.Popen(
        [sys.executable, "-m", "dqn_tune", *served], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        address = re.search(r"workers use --storage (grpc://\S+)", proxy.stdout.readline())  # type: ignore[union-attr]
        assert address is not None, proxy.communicate()
        tiny = [*TINY, "--timesteps", "600", "--total-trials", "3"]
        job = substituted(job_command, {})
        job[job.index("--storage") + 1] = address.group(1)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "dqn_tune", *arguments, *tiny],
                cwd=tmp_path,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for arguments in (
                job,
                substituted(slurm, {"DQN_TUNE_STORAGE": address.group(1), "SLURM_CPUS_PER_TASK": "1"}),
            )
        ]
        outcomes = [(worker.wait(timeout=300), worker.communicate()) for worker in workers]
        assert [code for code, _ in outcomes] == [0, 0], outcomes
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.communicate(timeout=60)
    trials = optuna.load_study(study_name="dqn-CartPole-v1", storage=database).get_trials()
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials)
