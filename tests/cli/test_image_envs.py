"""Every command on an image env (dqn-tune's Catch, pixels): train, evaluate with a GIF, tune with validation,
retrain, best, ablate; one-line errors with exit status 2 and nothing written for what images cannot do."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import optuna
import pytest

from dqn_tune.cli import main
from dqn_tune.dqn.agent import load_agent
from dqn_tune.envs.catch import RENDER_CELL, Catch

CATCH = ["--env", "dqn-tune/Catch-v0"]
TINY = [
    "--timesteps",
    "600",
    "--learning-starts",
    "100",
    "--eval-freq",
    "300",
    "--eval-curve-episodes",
    "2",
    "--eval-episodes",
    "2",
    "--batch-size",
    "16",
    "--buffer-size",
    "1000",
]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A storage URL holding a Catch study of two trials, validated."""
    url = f"sqlite:///{tmp_path_factory.mktemp('catch') / 'study.db'}"
    assert (
        main(
            [
                "tune",
                *CATCH,
                *TINY,
                "--storage",
                url,
                "--study-name",
                "catch",
                "--trials",
                "2",
                "--seeds",
                "1",
                "--no-artifacts",
                "--validate-top",
                "1",
                "--validation-seeds",
                "2",
            ]
        )
        == 0
    )
    return url


def test_train_and_evaluate_with_a_gif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, video = tmp_path / "catch.pt", tmp_path / "catch.gif"
    assert main(["train", *CATCH, *TINY, "--dueling", "--out", str(out)]) == 0
    agent = load_agent(out)
    assert agent.config.network == "auto" and type(agent.q_network).__name__ == "CNN"
    assert main(["evaluate", str(out), "--episodes", "2", "--video", str(video)]) == 0
    assert "dqn-tune/Catch-v0: mean return" in capsys.readouterr().out
    assert video.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert abs(imageio.get_reader(video).get_meta_data()["duration"] - 1000 / 8) < 10  # Catch's render_fps


class CellCatch(Catch):
    """Catch rendered as MinAtar renders its games: one float64 pixel per cell, colours from 0 to 1, and no
    declared frame rate; with `channels`, that many channels (a frame no video holds)."""

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's way, as in Catch

    def __init__(self, channels: int = 3, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.channels = channels

    def render(self) -> np.ndarray | None:
        frame = super().render()
        if frame is None:
            return None
        cells = frame[::RENDER_CELL, ::RENDER_CELL] / 255.0
        return np.concatenate([cells] * 2, axis=2)[:, :, : self.channels]


@pytest.fixture(scope="module")
def cell_catch() -> Iterator[list[str]]:
    """The ids of CellCatch rendering 3 channels and 2, registered for this module's tests."""
    ids = ["dqn-tune-test/CellCatch-v0", "dqn-tune-test/TwoChannelCatch-v0"]
    gym.register(ids[0], entry_point=CellCatch)
    gym.register(ids[1], entry_point=CellCatch, kwargs={"channels": 2})
    yield ids
    for env_id in ids:
        del gym.registry[env_id]


def test_an_env_rendering_small_float_frames_gets_a_video_of_enlarged_pixels(
    cell_catch: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "catch.pt"
    assert main(["train", *CATCH, *TINY, "--out", str(out)]) == 0
    for video in (tmp_path / "cells.gif", tmp_path / "cells.mp4"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["evaluate", str(out), "--episodes", "1", "--env", cell_catch[0], "--video", str(video)]) == 0
        assert f"to {video}" in capsys.readouterr().out
        assert not [w for w in caught if "render" in str(w.message)]  # gymnasium's checker: float64 frames, no fps
    frames = imageio.mimread(tmp_path / "cells.gif")
    assert abs(imageio.get_reader(tmp_path / "cells.gif").get_meta_data()["duration"] - 1000 / 30) < 10  # 30 fps
    assert len(frames) == 10 and all(frame.shape == (320, 160, 3) for frame in frames)  # 10 x 5 cells of 32 pixels
    bad = tmp_path / "two-channels.gif"
    assert main(["evaluate", str(out), "--episodes", "1", "--env", cell_catch[1], "--video", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dqn-tune: error: ") and err.count("\n") == 1
    assert "rendered a float64 array of shape (10, 5, 2)" in err and not bad.exists()


@pytest.mark.slow  # a study of two trials, its validation and a retrain: over 10 s
def test_tune_validates_and_retrain_and_best_take_the_cnn_config(
    study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trials = optuna.load_study(study_name="catch", storage=study).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    out = tmp_path / "final.pt"
    assert main(["retrain", "--study-name", "catch", "--storage", study, "--seeds", "2", "--out", str(out)]) == 0
    assert type(load_agent(out).q_network).__name__ == "CNN"
    capsys.readouterr()
    assert main(["best", "--study-name", "catch", "--storage", study, "--format", "yaml"]) == 0
    text = capsys.readouterr().out
    assert "policy: 'CnnPolicy'" in text and "network = cnn (cnn = auto): SB3's CnnPolicy is the Nature CNN" in text
    assert main(["best", "--study-name", "catch", "--storage", study, "--format", "args"]) == 0
    assert "--cnn-channels auto --cnn-hidden-sizes auto --optimizer adam" in capsys.readouterr().out


@pytest.mark.slow  # four training runs and a report: over 10 s
def test_ablate_over_cnn_widths_and_optimizers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "ablate",
                *CATCH,
                *TINY,
                "--storage",
                f"sqlite:///{tmp_path / 'ablation.db'}",
                "--seeds",
                "1",
                "--grid",
                "cnn_hidden_sizes=16,32",
                "--grid",
                "optimizer=adam,rmsprop",
                "--out-dir",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert sorted(line.split(" | ")[:3] for line in table[1:]) == [
        ["| 16", "adam", "1/1"],
        ["| 16", "rmsprop", "1/1"],
        ["| 32", "adam", "1/1"],
        ["| 32", "rmsprop", "1/1"],
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--cnn", "nature"],
            "dqn-tune: error: env 'dqn-tune/Catch-v0' has 10 x 5 frames; cnn = 'nature' (8x8/4, 4x4/2, "
            "3x3/1) needs frames of at least 36 x 36; set cnn = 'minatar' (frames of at least 3 x 3) or "
            "'auto'\n",
        ),
        (
            ["--cnn-channels", "8,8"],
            "dqn-tune: error: cnn_channels = [8, 8] gives 2 widths but cnn = 'minatar' has 1 "
            "convolution(s) (on the 10 x 5 frames of env 'dqn-tune/Catch-v0'); give 1, or set "
            "cnn\n",
        ),
        (
            ["--network", "mlp"],
            "dqn-tune: error: env 'dqn-tune/Catch-v0' has observations of shape (10, 5, 3) uint8; "
            "network = 'mlp' needs flat (1-D) observations\n",
        ),
        (["--buffer-size", "10000000000"], "--buffer-size = 10000000000 is too large: "),
        (["--optimizer", "sgd"], "dqn-tune: error: --optimizer = 'sgd' is invalid: expected one of adam, rmsprop\n"),
    ],
)
@pytest.mark.parametrize("command", ["train", "tune"])
def test_what_images_cannot_do_is_one_line_exit_2_and_nothing_written(
    command: str, flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = (
        ["--out", str(tmp_path / "a.pt")]
        if command == "train"
        else ["--storage", f"sqlite:///{tmp_path / 'study.db'}", "--trials", "1", "--no-artifacts"]
    )
    assert main([command, *CATCH, "--timesteps", "600", "--learning-starts", "100", *flags, *where]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dqn-tune: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
