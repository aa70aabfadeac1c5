"""`dqn-tune train` and `dqn-tune evaluate` through cli.main: exit 0 on a tiny run, exit 2 and one line on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from dqn_tune.cli import main
from dqn_tune.dqn.agent import load_agent

TINY_FLAGS = ["--timesteps", "300", "--learning-starts", "50", "--batch-size", "16", "--buffer-size", "300",
              "--hidden-sizes", "16", "--eval-freq", "150", "--eval-curve-episodes", "1", "--eval-episodes", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An agent file written by a tiny `dqn-tune train`."""
    out = tmp_path_factory.mktemp("cli") / "models" / "cartpole.pt"
    assert main(["train", "--env", "CartPole-v1", "--seed", "0", "--out", str(out), *TINY_FLAGS]) == 0
    return out


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a failed command (no traceback)."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dqn-tune: error: "), err
    return err


def test_train_saves_an_agent_with_the_flags_as_config(trained: Path) -> None:
    agent = load_agent(trained)
    assert agent.env_id == "CartPole-v1"
    assert agent.config.total_timesteps == 300 and agent.config.hidden_sizes == (16,)
    assert agent.metadata["training"]["eval_episodes"] == 2


def test_train_prints_progress_and_the_final_return(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agent.pt"
    assert main(["train", "--out", str(out), "--gamma", "1", "--double-dqn", *TINY_FLAGS]) == 0
    printed = capsys.readouterr().out
    assert "step      150/300  eval return" in printed
    assert "mean evaluation return over 2 episodes" in printed and f"saved agent to {out}" in printed
    assert load_agent(out).config.double_dqn is True and load_agent(out).config.gamma == 1.0


def test_evaluate_prints_mean_and_std_and_writes_a_gif(trained: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "episode.gif"
    assert main(["evaluate", str(trained), "--episodes", "3", "--seed", "1", "--video", str(video)]) == 0
    printed = capsys.readouterr().out
    assert "CartPole-v1: mean return" in printed and "over 3 episodes" in printed
    assert video.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


@pytest.mark.parametrize(("flags", "named"), [
    (["--batch-size", "0"], "--batch-size = 0"),
    (["--buffer-size", "-5"], "--buffer-size = -5"),
    (["--timesteps", "0"], "--total-timesteps = 0"),
    (["--target-update-interval", "0"], "--target-update-interval = 0"),
    (["--train-freq", "-1"], "--train-freq = -1"),
    (["--gradient-steps", "0"], "--gradient-steps = 0"),
    (["--hidden-sizes", "64,0"], "--hidden-sizes = [64, 0]"),
    (["--learning-rate", "0"], "--learning-rate = 0.0"),
    (["--learning-rate", "-0.001"], "--learning-rate = -0.001"),
    (["--gamma", "0"], "--gamma = 0.0 is invalid: expected a number in (0, 1]"),
    (["--gamma", "1.5"], "--gamma = 1.5 is invalid: expected a number in (0, 1]"),
    (["--gamma", "-0.9"], "--gamma = -0.9"),
    (["--batch-size", "256", "--buffer-size", "100"],
     "--batch-size = 256 is invalid: expected at most --buffer-size (100)"),
    (["--learning-starts", "500", "--timesteps", "500"], "--learning-starts = 500 is invalid: expected less than"),
    (["--learning-starts", "900", "--timesteps", "500"], "--learning-starts = 900"),
    (["--max-grad-norm", "0"], "--max-grad-norm = 0.0"),
    (["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    (["--env", "Pendulum-v1"], "env 'Pendulum-v1' has a Box action space; DQN needs a Discrete action space"),
    (["--env", "MountainCarContinuous-v0"], "env 'MountainCarContinuous-v0' has a Box action space"),
    (["--gamma", "abc"], "invalid float value: 'abc'"),
    (["--hidden-sizes", "wide"], "invalid layer widths 'wide'"),
])
def test_train_rejects_bad_input_with_one_line_naming_the_value(flags: list[str], named: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agent.pt"
    assert main(["train", "--out", str(out), *flags]) == 2
    assert named in one_error_line(capsys)
    assert not out.exists()


def test_train_rejects_an_out_path_under_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "somefile"
    blocker.write_text("not a directory")
    out = blocker / "x.pt"
    assert main(["train", "--out", str(out), *TINY_FLAGS]) == 2
    assert f"cannot write output path '{out}'" in one_error_line(capsys)


@pytest.mark.parametrize("out", ["/proc/dqn-tune-test.pt", "/proc/self/nope/x.pt"])
def test_train_rejects_an_out_path_in_a_read_only_filesystem(out: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", out, *TINY_FLAGS]) == 2
    assert f"cannot write output path '{out}'" in one_error_line(capsys)


def test_train_rejects_a_directory_as_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path), *TINY_FLAGS]) == 2
    assert f"output path '{tmp_path}' is a directory" in one_error_line(capsys)


def test_evaluate_rejects_bad_input_with_one_line(trained: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    cases = [
        ([str(tmp_path / "missing.pt")], "does not exist"),
        ([str(garbage)], "is not a readable dqn-tune agent file"),
        ([str(trained), "--episodes", "0"], "--episodes = 0 is invalid"),
        ([str(trained), "--env", "Acrobot-v1"], "agent expects 4 observation values and 2 actions"),
        ([str(trained), "--env", "Pendulum-v1"], "has a Box action space"),
        ([str(trained), "--video", str(tmp_path / "episode.avi")], "expected .gif or .mp4"),
    ]
    for args, named in cases:
        assert main(["evaluate", *args]) == 2, args
        assert named in one_error_line(capsys)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="--gamma = 2.0"):
        main(["train", "--debug", "--out", str(tmp_path / "a.pt"), "--gamma", "2"])
