"""Per-env presets: they load and validate, train and tune start from them, --no-preset and other envs use the
defaults."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from dqn_tune.cli import main
from dqn_tune.dqn.agent import load_agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import train
from dqn_tune.tuning.objective import trial_base_config
from dqn_tune.tuning.presets import EVALS_PER_RUN, _preset, load_presets, preset_for
from dqn_tune.tuning.records import study_settings
from dqn_tune.tuning.search_space import DEFAULT_SPACE
from dqn_tune.tuning.seeds import retrain_seeds
from tests.budgets import TINY_TRAINING

ENVS = (
    "CartPole-v1",
    "Acrobot-v1",
    "LunarLander-v3",
    "MountainCar-v0",
    "MinAtar/Breakout-v1",
    "MinAtar/SpaceInvaders-v1",
)


def test_every_preset_loads_as_a_valid_config_and_search_space() -> None:
    presets = load_presets()
    assert set(presets) == set(ENVS)
    for env_id, preset in presets.items():
        config = preset.base_config()
        assert isinstance(config, DQNConfig) and config.env_id == env_id
        assert config.total_timesteps == preset.timesteps and config.eval_freq == preset.timesteps // EVALS_PER_RUN
        preset.space.check(preset.base_config(timesteps=preset.trial_timesteps))
        assert set(DEFAULT_SPACE.params) <= set(preset.space.params)
        assert preset.source


@pytest.mark.parametrize("written", ["none", "None", 2.5])
def test_a_preset_writes_max_grad_norm_as_config_files_do(written: str | float) -> None:
    entry = {"timesteps": 10_000, "trial_timesteps": 10_000, "source": "a test", "config": {"max_grad_norm": written}}
    preset = _preset("CartPole-v1", entry)
    assert preset.base_config().max_grad_norm == (None if isinstance(written, str) else written)


def test_mountain_car_space_contains_the_region_where_dqn_reaches_the_flag() -> None:
    space = load_presets()["MountainCar-v0"].space.to_dict()
    for name in (
        "train_freq",
        "gradient_steps",
        "exploration_fraction",
        "exploration_final_eps",
        "learning_starts",
        "hidden_sizes",
    ):
        assert name in space
    assert 16 in space["train_freq"]["choices"] and 8 in space["gradient_steps"]["choices"]
    assert [256, 256] in space["hidden_sizes"]["choices"] and 0.98 in space["gamma"]["choices"]
    assert space["learning_rate"]["low"] <= 4e-3 <= space["learning_rate"]["high"]


def test_trial_base_config_starts_from_the_preset_unless_told_not_to() -> None:
    preset = preset_for("MountainCar-v0")
    assert preset is not None
    assert trial_base_config("MountainCar-v0").total_timesteps == preset.trial_timesteps
    assert trial_base_config("MountainCar-v0", preset=False) == DQNConfig(env_id="MountainCar-v0", eval_freq=5_000)
    assert preset_for("Pendulum-v1") is None
    assert trial_base_config("FrozenLake-v1").total_timesteps == DQNConfig().total_timesteps


TINY = [*TINY_TRAINING, "--eval-episodes", "1", "--eval-curve-episodes", "1"]


def test_train_says_which_start_it_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.pt"
    assert main(["train", "--env", "Acrobot-v1", "--out", str(out), *TINY]) == 0
    assert "starting from the Acrobot-v1 preset ('dqn-tune presets --env Acrobot-v1' says" in capsys.readouterr().out
    assert load_agent(out).config.buffer_size == preset_for("Acrobot-v1").base_config().buffer_size  # type: ignore[union-attr]
    assert main(["train", "--env", "Acrobot-v1", "--no-preset", "--out", str(out), *TINY]) == 0
    assert "starting from the global defaults" in capsys.readouterr().out


def test_tune_samples_the_env_preset_space_and_no_preset_the_default_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    common = [
        "--trials",
        "1",
        "--storage",
        url,
        "--trial-seeds",
        "1",
        "--validate-top",
        "0",
        "--no-artifacts",
        "--timesteps",
        "300",
        "--learning-starts",
        "100",
        "--eval-episodes",
        "1",
        "--eval-curve-episodes",
        "1",
        "--hidden-sizes",
        "16",
        "--learning-rate",
        "1e-3",
        "--gradient-steps",
        "1",
        "--train-freq",
        "4",
    ]
    assert main(["tune", "--env", "Acrobot-v1", "--study-name", "preset", *common]) == 0
    assert main(["tune", "--env", "Acrobot-v1", "--study-name", "plain", "--no-preset", *common]) == 0
    out = capsys.readouterr().out
    assert "starting from the Acrobot-v1 preset" in out and "starting from the global defaults" in out
    with_preset = study_settings(optuna.load_study(study_name="preset", storage=url))["search_space"]
    without = study_settings(optuna.load_study(study_name="plain", storage=url))["search_space"]
    assert "exploration_fraction" in with_preset and set(without) == set(DEFAULT_SPACE.params) - {"learning_rate"}


def test_presets_command_lists_every_env(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(env in out for env in ENVS)
    assert max(map(len, out.splitlines())) <= 100  # a terminal's line, not a 400-character source
    assert main(["presets", "--env", "MountainCar-v0"]) == 0
    out = capsys.readouterr().out
    assert "train_freq: one of 4, 8, 16" in out and max(map(len, out.splitlines())) <= 100


@pytest.mark.slow
def test_the_acrobot_preset_learns_within_15_percent_of_its_budget() -> None:
    """Keeps the preset honest as the trainer changes: one fresh seed, a loose bar (RL Zoo's DQN: -76.6 at
    100k; a policy that never swings up scores -500). The preset makes 4 updates of batch 256 per step, so its
    whole 100k budget costs minutes; a 15k-step run of it already swings up well above the bar on this seed.
    scripts/bench_quality.py measures the full budget."""
    preset = preset_for("Acrobot-v1")
    assert preset is not None
    result = train(preset.base_config(timesteps=15_000), seed=retrain_seeds(1)[0])
    assert result.mean_return >= -150
