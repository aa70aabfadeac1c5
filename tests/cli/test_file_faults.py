"""Files written and read by the commands: a write cut short leaves the old file whole; an agent file allocates no
more than its own tensors and decides no import; config and search-space files are bounded and their parser's
errors are one line."""

from __future__ import annotations

import os
import re
import resource
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dqn_tune.cli import main
from dqn_tune.dqn.agent import Agent, save_agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.networks import make_q_network
from dqn_tune.dqn.observations import ObservationSpec

RunInChild = Callable[[list[str], Callable[[], None]], tuple[int, str, str]]
SIZE_LIMIT = 512
"""A file size limit (bytes) below the size of a config exported as JSON."""


def test_best_out_leaves_the_old_file_whole_when_the_write_is_cut_short(
    study_db: Path, tmp_path: Path, in_child: RunInChild, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file size limit (RLIMIT_FSIZE, as `ulimit -f`) stops the write part-way, as a full disk would."""
    storage = ["--storage", f"sqlite:///{study_db}"]
    assert main(["best", *storage, "--format", "json"]) == 0
    assert len(capsys.readouterr().out.encode()) > SIZE_LIMIT  # the export does not fit under the limit
    out = tmp_path / "best.toml"
    out.write_text("learning_rate = 0.001\n")

    code, _, err = in_child(
        ["best", *storage, "--format", "json", "--out", str(out)],
        lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (SIZE_LIMIT, resource.RLIM_INFINITY)),
    )
    assert code == 2 and err == (
        f"dqn-tune: error: cannot write '{out}': File too large (the file size limit "
        "(ulimit -f) is too small for it); the file there, if any, is unchanged\n"
    )
    assert out.read_text() == "learning_rate = 0.001\n" and os.listdir(tmp_path) == ["best.toml"]


def stride_0_agent(path: Path, obs_dim: int) -> Path:
    """An agent file whose first weight is one stored number viewed as a (64, obs_dim) tensor: a few kB on disk,
    4 * 64 * obs_dim bytes once a network is built from it."""
    state = {
        "layers.0.weight": torch.zeros(1).expand(64, obs_dim),
        "layers.0.bias": torch.zeros(64),
        "layers.2.weight": torch.zeros(2, 64),
        "layers.2.bias": torch.zeros(2),
    }
    torch.save(
        {
            "format": "dqn-tune-agent",
            "format_version": 1,
            "config": DQNConfig(hidden_sizes=(64,)).to_dict(),
            "obs_dim": obs_dim,
            "n_actions": 2,
            "state_dict": state,
            "metadata": {},
        },
        path,
    )
    return path


def test_an_agent_file_of_stride_0_weights_is_refused_before_anything_is_allocated(
    tmp_path: Path, in_child: RunInChild
) -> None:
    """evaluate runs under an address-space limit (RLIMIT_AS) of 1 GiB more than it uses: building the network the
    file describes needs 256 GB."""
    path = stride_0_agent(tmp_path / "agent.pt", obs_dim=10**9)
    assert path.stat().st_size < 10_000
    in_use = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    code, out, err = in_child(
        ["evaluate", str(path), "--episodes", "1"],
        lambda: resource.setrlimit(resource.RLIMIT_AS, (in_use + 2**30, resource.RLIM_INFINITY)),
    )
    assert (
        code == 2
        and out == ""
        and err
        == (
            f"dqn-tune: error: '{path}' is a damaged dqn-tune agent file: tensor 'layers.0.weight' of shape [64, "
            "1000000000] needs 256000000000 bytes and the file holds 4 of them (a view with stride 0?); nothing is "
            "built from it\n"
        )
    )


PLANTED_MODULE = """\
import pathlib

import gymnasium

pathlib.Path(__file__).with_suffix(".imported").touch()
gymnasium.register("{env}", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv", max_episode_steps=20)
"""


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """(env id 'module:Env', the file its import creates): a module in the current folder, which `python -m` puts on
    sys.path, that registers a CartPole under a new id when imported."""
    module = f"planted_{uuid.uuid4().hex}"
    env = f"Planted{uuid.uuid4().hex}-v0"
    (tmp_path / f"{module}.py").write_text(PLANTED_MODULE.format(env=env))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{module}:{env}", tmp_path / f"{module}.imported"


def files_naming(env_id: str, tmp_path: Path) -> dict[str, Path]:
    """An agent file and a config file (as `best --format toml` writes) whose env id is `env_id`."""
    config = DQNConfig(env_id=env_id, hidden_sizes=(16,))
    agent = Agent(make_q_network(config, ObservationSpec.flat(4), 2, seeds=[0]), config)
    config = tmp_path / "best.toml"
    config.write_text(
        f'env_id = "{env_id}"\ntotal_timesteps = 300\nlearning_starts = 50\nbatch_size = 16\n'
        "hidden_sizes = [16]\neval_freq = 150\neval_curve_episodes = 1\neval_episodes = 1\n"
    )
    return {"evaluate": save_agent(agent, tmp_path / "agent.pt"), "train": config}


COMMANDS = {
    "evaluate": ["evaluate", "{file}", "--episodes", "1"],
    "train": ["train", "--config", "{file}", "--out", "{dir}/trained.pt"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_never_decides_which_module_is_imported(
    command: str, planted: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_id, imported = planted
    module = env_id.split(":")[0]
    args = [arg.format(file=files_naming(env_id, tmp_path)[command], dir=tmp_path) for arg in COMMANDS[command]]

    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"which would import the Python module '{module}'" in err, err
    assert f"name the env yourself with --env {env_id}" in err
    assert not imported.exists() and module not in sys.modules

    assert main([*args, "--env", env_id]) == 0, capsys.readouterr().err  # the user named the module: imported
    assert imported.exists() and module in sys.modules


def nested_brackets(path: Path) -> Path:
    path.write_text("x = " + "[" * 100_000)  # 200 kB on which tomllib recurses past Python's limit
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)  # reading it would wait for a writer forever
    return path


def large(path: Path) -> Path:
    path.write_text("# padding\n" * 200_000)
    return path


HOSTILE_TOML: dict[str, tuple[Callable[[Path], Path], str]] = {
    "100,000 nested brackets": (nested_brackets, "{what} is not valid TOML: its arrays or tables nest too deeply"),
    "a device that never ends": (
        lambda _: Path("/dev/zero"),
        "cannot read {what}: it is a device, pipe or socket, not a regular file",
    ),
    "a FIFO": (fifo, "cannot read {what}: it is a device, pipe or socket, not a regular file"),
    "2 MB of comments": (large, "{what} is larger than 1000000 bytes; expected a TOML file of a few kB"),
}
READERS = {
    "config file": ["train", "--config", "{file}", "--out", "{dir}/agent.pt"],
    "search-space file": ["tune", "--search-space", "{file}", "--trials", "1", "--storage", "sqlite:///{dir}/study.db"],
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", HOSTILE_TOML)
def test_hostile_toml_files_are_one_line_errors_within_bounds(
    reader: str, case: str, tmp_path: Path, in_child: RunInChild
) -> None:
    """Each command runs in a child under an address-space limit of 1 GiB more than it uses, and an alarm that kills
    it after 60 s: reading /dev/zero or a FIFO without bounds fails the test instead of exhausting the machine."""
    make, message = HOSTILE_TOML[case]
    path = make(tmp_path / "hostile.toml")
    in_use = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (in_use + 2**30, resource.RLIM_INFINITY))
        signal.alarm(60)

    code, out, err = in_child([arg.format(file=path, dir=tmp_path) for arg in READERS[reader]], bounded)
    assert code == 2 and err.count("\n") == 1, (code, out, err)
    assert message.format(what=f"{reader} '{path}'") in err, err
    assert sorted(os.listdir(tmp_path)) == (["hostile.toml"] if path.parent == tmp_path else [])
