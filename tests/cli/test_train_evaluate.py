"""`dqn-tune train` and `dqn-tune evaluate` through cli.main: exit 0 on a tiny run, exit 2 and one line on bad input."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dqn_tune.cli import main
from dqn_tune.dqn.agent import load_agent

TINY_FLAGS = [
    "--timesteps",
    "300",
    "--learning-starts",
    "50",
    "--batch-size",
    "16",
    "--buffer-size",
    "300",
    "--hidden-sizes",
    "16",
    "--eval-freq",
    "150",
    "--eval-curve-episodes",
    "1",
    "--eval-episodes",
    "2",
]


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


def test_train_takes_the_new_options_as_flags_and_the_agent_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "agent.pt"
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--n-steps",
                "3",
                "--dueling",
                "--prioritized-replay",
                "--per-alpha",
                "0.5",
                "--per-beta",
                "0.2",
                "--per-eps",
                "0.001",
                *TINY_FLAGS,
            ]
        )
        == 0
    )
    config = load_agent(out).config
    assert (config.n_steps, config.dueling, config.prioritized_replay) == (3, True, True)
    assert (config.per_alpha, config.per_beta, config.per_eps, config.network) == (0.5, 0.2, 0.001, "auto")
    assert main(["evaluate", str(out), "--episodes", "1"]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_on_cuda_saves_an_agent_that_plays_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agent.pt"
    assert main(["train", "--device", "cuda", "--out", str(out), *TINY_FLAGS]) == 0
    assert "step      150/300  eval return" in capsys.readouterr().out
    assert all(tensor.device.type == "cpu" for tensor in load_agent(out).q_network.state_dict().values())
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0


def test_evaluate_prints_mean_and_std_and_writes_a_gif(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "episode.gif"
    assert main(["evaluate", str(trained), "--episodes", "3", "--seed", "1", "--video", str(video)]) == 0
    printed = capsys.readouterr().out
    assert "CartPole-v1: mean return" in printed and "over 3 episodes" in printed
    assert video.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--batch-size", "0"], "--batch-size = 0"),
        (["--buffer-size", "-5"], "--buffer-size = -5"),
        (["--timesteps", "0"], "--timesteps = 0"),
        (["--target-update-interval", "0"], "--target-update-interval = 0"),
        (["--train-freq", "-1"], "--train-freq = -1"),
        (["--gradient-steps", "0"], "--gradient-steps = 0"),
        (["--hidden-sizes", "64,0"], "--hidden-sizes = [64, 0]"),
        (["--learning-rate", "0"], "--learning-rate = 0.0"),
        (["--learning-rate", "-0.001"], "--learning-rate = -0.001"),
        (["--gamma", "0"], "--gamma = 0.0 is invalid: expected a number in (0, 1]"),
        (["--gamma", "1.5"], "--gamma = 1.5 is invalid: expected a number in (0, 1]"),
        (["--gamma", "-0.9"], "--gamma = -0.9"),
        (
            ["--batch-size", "256", "--buffer-size", "100"],
            "--batch-size = 256 is invalid: expected at most --buffer-size (100)",
        ),
        (["--learning-starts", "500", "--timesteps", "500"], "--learning-starts = 500 is invalid: expected less than"),
        (["--learning-starts", "900", "--timesteps", "500"], "--learning-starts = 900"),
        (["--max-grad-norm", "0"], "--max-grad-norm = 0.0"),
        (["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
        (["--env", "Pendulum-v1"], "env 'Pendulum-v1' has a Box action space; DQN needs a Discrete action space"),
        (["--env", "MountainCarContinuous-v0"], "env 'MountainCarContinuous-v0' has a Box action space"),
        (["--gamma", "abc"], "invalid float value: 'abc'"),
        (["--hidden-sizes", "wide"], "invalid layer widths 'wide'"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        pytest.param(
            ["--device", "cuda"],
            "device = 'cuda' is invalid on this machine: torch sees no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present"),
        ),
    ],
)
def test_train_rejects_bad_input_with_one_line_naming_the_value(
    flags: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "agent.pt"
    assert main(["train", "--out", str(out), *flags]) == 2
    assert named in one_error_line(capsys)
    assert not out.exists()


NOT_GIVEN = "--learning-starts was not given: this is the value of the preset, --config file or defaults in use\n"


@pytest.mark.parametrize("command", ["train", "tune"])
def test_an_invalid_value_not_given_says_where_it_comes_from(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = (
        ["--out", str(tmp_path / "agent.pt")]
        if command == "train"
        else ["--trials", "1", "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    )
    # --timesteps 500 against the default learning_starts (1000): the error names a flag the user never typed
    assert main([command, *where, "--timesteps", "500"]) == 2
    assert one_error_line(capsys).endswith(f"expected less than --timesteps (500); {NOT_GIVEN}")
    assert main([command, *where, "--timesteps", "500", "--learning-starts", "600"]) == 2
    assert one_error_line(capsys).endswith("expected less than --timesteps (500)\n")
    assert list(tmp_path.iterdir()) == []


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


def test_evaluate_rejects_bad_input_with_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    cases = [
        ([str(tmp_path / "missing.pt")], "does not exist"),
        ([str(garbage)], "is not a readable dqn-tune agent file"),
        ([str(trained), "--episodes", "0"], "argument --episodes: invalid value '0'; expected an integer >= 1"),
        ([str(trained), "--env", "Acrobot-v1"], "agent expects observations of shape (4,) float32 and 2 actions"),
        ([str(trained), "--env", "Pendulum-v1"], "has a Box action space"),
        ([str(trained), "--video", str(tmp_path / "episode.avi")], "expected .gif or .mp4"),
    ]
    for args, named in cases:
        assert main(["evaluate", *args]) == 2, args
        assert named in one_error_line(capsys)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"--gamma = 2\.0"):
        main(["train", "--debug", "--out", str(tmp_path / "a.pt"), "--gamma", "2"])


@pytest.mark.parametrize("flags", [["--seed", "-1"], ["--seed", "4294967296"], ["--seed", str(10**30)]])
def test_train_and_evaluate_reject_a_seed_outside_32_bits(
    flags: list[str], trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = (
        f"dqn-tune: error: argument --seed: invalid value '{flags[1]}'; expected an integer from 0 to "
        "4294967295 (2**32 - 1) (see 'dqn-tune {command} --help')\n"
    )
    out = tmp_path / "models" / "agent.pt"
    assert main(["train", "--out", str(out), *flags, *TINY_FLAGS]) == 2
    assert one_error_line(capsys) == expected.format(command="train")
    assert not out.parent.exists()
    assert main(["evaluate", str(trained), "--episodes", "1", *flags]) == 2
    assert one_error_line(capsys) == expected.format(command="evaluate")


def test_the_largest_seed_trains_and_evaluates(trained: Path, tmp_path: Path) -> None:
    assert main(["train", "--out", str(tmp_path / "a.pt"), "--seed", "4294967295", *TINY_FLAGS]) == 0
    assert main(["evaluate", str(trained), "--episodes", "1", "--seed", "4294967295"]) == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ["--buffer-size", "99999999999999"],
            "--buffer-size = 99999999999999 is too large: this run needs 4.28e+06 GiB",
        ),
        (
            ["--hidden-sizes", "100000,100000,100000"],
            "--hidden-sizes = [100000, 100000, 100000] is too large: this run needs 522.14 GiB",
        ),
        (["--hidden-sizes", "1000000000"], "--hidden-sizes = [1000000000] is too large"),
        (["--timesteps", str(10**30)], f"--timesteps = {10**30} is invalid: expected an integer from 1 to 2**63 - 1"),
        (["--n-steps", "0"], "--n-steps = 0 is invalid: expected an integer from 1 to 2**63 - 1"),
        (
            ["--n-steps", "200", "--buffer-size", "100", "--batch-size", "32"],
            "--n-steps = 200 is invalid: expected at most --buffer-size (100)",
        ),
        (["--per-alpha", "1.5"], "--per-alpha = 1.5 is invalid: expected a number in [0, 1]"),
        (["--per-eps", "0"], "--per-eps = 0.0 is invalid: expected a finite number > 0"),
        (["--network", "rnn"], "--network = 'rnn' is invalid: expected one of auto, mlp, cnn"),
    ],
)
def test_train_refuses_a_config_that_cannot_fit_before_writing_anything(
    flags: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "agent.pt"
    assert main(["train", "--out", str(out), *flags]) == 2
    line = one_error_line(capsys)
    assert named in line and ("GiB is available (" in line or "invalid" in line), line
    assert list(tmp_path.iterdir()) == []


def test_a_config_file_value_that_cannot_fit_says_it_was_not_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "big.toml"
    config_file.write_text("buffer_size = 99999999999999\n")
    out = tmp_path / "agent.pt"
    assert main(["train", "--config", str(config_file), "--out", str(out)]) == 2
    assert one_error_line(capsys).endswith(
        f"lower --buffer-size; {NOT_GIVEN.replace('--learning-starts', '--buffer-size')}"
    )
    assert main(["train", "--config", str(config_file), "--buffer-size", "99999999999998", "--out", str(out)]) == 2
    assert one_error_line(capsys).endswith("lower --buffer-size\n")
    assert not out.exists()


def torch_archive_with_pickle(path: Path, data: bytes, compression: int = zipfile.ZIP_STORED) -> None:
    """A torch.save archive whose data.pkl is replaced by `data`."""
    torch.save({"format": "dqn-tune-agent"}, path)
    with zipfile.ZipFile(path) as original:
        members = {name: original.read(name) for name in original.namelist()}
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, data if name.endswith("/data.pkl") else content)


class WritesAFile:
    """Unpickling this would create `marker`: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.marker), "w")


def npy_bytes() -> bytes:
    """An array in numpy's .npy format."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(4))
    return buffer.getvalue()


def edited(**changes: Any) -> Callable[[Path, dict[str, Any]], None]:
    """A case writing the trained agent's payload with some entries changed (a callable: edited by a function)."""

    def write(path: Path, payload: dict[str, Any]) -> None:
        torch.save({**payload, **{k: v(payload[k]) if callable(v) else v for k, v in changes.items()}}, path)

    return write


BAD_AGENT_FILES: dict[str, tuple[Callable[[Path, dict[str, Any]], None], str]] = {
    "a directory": (lambda path, _: path.mkdir(), "is a directory; expected an agent file such as models/agent.pt"),
    "an empty file": (lambda path, _: path.write_bytes(b""), "is not a readable dqn-tune agent file: it is empty"),
    "a text file": (lambda path, _: path.write_text("weights\n"), "it is not a torch zip archive"),
    "a numpy file": (lambda path, _: path.write_bytes(npy_bytes()), "it is not a torch zip archive"),
    "a plain pickle that would run code": (
        lambda path, _: path.write_bytes(pickle.dumps({"format": WritesAFile(path.with_name("ran"))}, protocol=4)),
        "it is not a torch zip archive (truncated, or another format such as a plain pickle)",
    ),
    "a torch archive whose protocol-4 pickle would run code": (
        lambda path, _: torch_archive_with_pickle(path, pickle.dumps(WritesAFile(path.with_name("ran")), protocol=4)),
        "it holds objects other than tensors and plain data, which are never unpickled",
    ),
    "a compressed archive (inflates to far more than its size)": (
        lambda path, _: torch_archive_with_pickle(
            path, pickle.dumps({"pad": b"\0" * 10**6}, protocol=2), zipfile.ZIP_DEFLATED
        ),
        "it has compressed members; torch.save writes none",
    ),
    "a negative observation size": (
        edited(observation=lambda o: {**o, "shape": [-4]}),
        "observation = {'shape': [-4], 'dtype': 'float32', 'low': tensor",
    ),
    "negative n_actions": (edited(n_actions=-2), "n_actions = -2 is invalid: expected an integer >= 1"),
    "an observation spec as text": (
        edited(observation="4"),
        "observation = '4' is invalid: expected a dict of shape, dtype, low and high as save_agent writes it",
    ),
    "an observation dtype that is not one": (
        edited(observation=lambda o: {**o, "dtype": "object"}),
        "observation = {'shape': [4], 'dtype': 'object'",
    ),
    "n_actions as a float": (edited(n_actions=2.0), "n_actions = 2.0 is invalid"),
    "n_actions as a bool": (edited(n_actions=True), "n_actions = True is invalid"),
    "a huge observation size": (
        edited(observation=lambda o: {**o, "shape": [10**12]}),
        "observation = {'shape': [1000000000000], 'dtype': 'float32'",
    ),
    "huge hidden sizes": (
        edited(config=lambda c: {**c, "hidden_sizes": [10**9, 10**9]}),
        (
            "its weights do not fit a network with observations of shape (4,) float32, 2 actions, "
            "network = 'mlp', hidden sizes [1000000000, 1000000000] and dueling = false"
        ),
    ),
    "negative hidden sizes": (edited(config=lambda c: {**c, "hidden_sizes": [-16]}), "hidden_sizes = [-16] is invalid"),
    "hidden sizes as text": (edited(config=lambda c: {**c, "hidden_sizes": "16"}), "hidden_sizes = ['1', '6']"),
    "a config that is a list": (
        edited(config=[1, 2]),
        "config = [1, 2] is invalid: expected a dict of hyperparameters",
    ),
    "weights that are text": (edited(state_dict="w" * 500), "state_dict = 'wwww"),
    "a weight that is not a tensor": (
        edited(state_dict=lambda s: {**s, "hidden_biases.0": [0.0] * 16}),
        "its weights do not fit a network",
    ),
    "float64 weights": (
        edited(state_dict=lambda s: {k: v.double() for k, v in s.items()}),
        "its weights do not fit a network",
    ),
    "an extra weight": (edited(state_dict=lambda s: {**s, "extra": torch.zeros(1)}), "its weights do not fit"),
    "metadata that is a number": (edited(metadata=3), "metadata = 3 is invalid: expected a dict"),
}


@pytest.mark.parametrize("case", BAD_AGENT_FILES)
def test_evaluate_refuses_a_hostile_agent_file_with_one_line_and_no_warning(
    case: str, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    write, named = BAD_AGENT_FILES[case]
    path = tmp_path / "agent.pt"
    write(path, torch.load(trained, weights_only=True))
    before = path.read_bytes() if path.is_file() else None
    assert main(["evaluate", str(path), "--episodes", "1"]) == 2
    line = one_error_line(capsys)
    assert named in line and f"'{path}'" in line, line
    assert [str(w.message) for w in recwarn] == []
    assert not (tmp_path / "ran").exists()  # no code from the file ran
    assert (path.read_bytes() if path.is_file() else None) == before


CONFIG_FILE = """# as 'dqn-tune best --format toml' writes it, fewer keys
total_timesteps = 300
learning_starts = 50
batch_size = 16
buffer_size = 300
hidden_sizes = [16]
eval_freq = 150
eval_curve_episodes = 1
eval_episodes = 2
learning_rate = 0.002
max_grad_norm = "none"
"""


def test_train_config_file_sets_the_hyperparameters_and_flags_override_it(tmp_path: Path) -> None:
    from dqn_tune.dqn.config import DQNConfig

    config_file = tmp_path / "best.toml"
    config_file.write_text(CONFIG_FILE)
    out = tmp_path / "agent.pt"
    assert (
        main(["train", "--config", str(config_file), "--hidden-sizes", "8", "--gamma", "0.9", "--out", str(out)]) == 0
    )
    assert load_agent(out).config == DQNConfig(
        total_timesteps=300,
        learning_starts=50,
        batch_size=16,
        buffer_size=300,
        hidden_sizes=(8,),
        eval_freq=150,
        eval_curve_episodes=1,
        eval_episodes=2,
        learning_rate=0.002,
        max_grad_norm=None,
        gamma=0.9,
    )


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (
            "learning_rat = 0.1\n",
            "config file '{path}': unknown key 'learning_rat'; expected DQNConfig fields: env_id, ",
        ),
        ('batch_size = "big"\n', "config file '{path}': batch_size = 'big' is invalid: expected an integer"),
        ("gamma = 1.5\n", "config file '{path}': gamma = 1.5 is invalid: expected a number in (0, 1]"),
        ("hidden_sizes = 64\n", "config file '{path}': hidden_sizes = 64 is invalid: expected a list of integers"),
        ("hidden_sizes = [64, true]\n", "config file '{path}': hidden_sizes = [64, True] is invalid"),
        ("double_dqn = 1\n", "config file '{path}': double_dqn = 1 is invalid: expected true or false"),
        ("[table]\nbatch_size = 3\n", "config file '{path}': unknown key 'table'"),
        ("batch_size = \n", "config file '{path}' is not valid TOML: "),
        (None, "cannot read config file '{path}': No such file or directory"),
    ],
)
def test_train_rejects_a_bad_config_file_with_one_line_naming_file_and_key(
    content: str | None, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "bad.toml"
    if content is not None:
        config_file.write_text(content)
    out = tmp_path / "agent.pt"
    assert main(["train", "--config", str(config_file), "--out", str(out)]) == 2
    assert named.format(path=config_file) in one_error_line(capsys)
    assert not out.exists()
