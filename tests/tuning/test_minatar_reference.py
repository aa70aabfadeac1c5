"""MinAtar's published DQN configuration, as the reference the MinAtar studies are judged against."""

from __future__ import annotations

from pathlib import Path

import pytest

from dqn_tune.dqn.loop import epsilon_at
from dqn_tune.results.export import read_config_file
from dqn_tune.tuning.reference import minatar_reference


def test_the_reference_is_minatars_published_dqn() -> None:
    config = minatar_reference("MinAtar/Breakout-v1", 1_000_000)
    assert (
        config.network,
        config.cnn,
        config.batch_size,
        config.buffer_size,
        config.target_update_interval,
        config.learning_starts,
        config.train_freq,
        config.gradient_steps,
        config.gamma,
    ) == ("cnn", "minatar", 32, 100_000, 1_000, 5_000, 1, 1, 0.99)
    assert (config.optimizer, config.learning_rate, config.loss, config.max_grad_norm, config.double_dqn) == (
        "rmsprop",
        2.5e-4,
        "huber",
        None,
        False,
    )


@pytest.mark.parametrize(
    ("timesteps", "step", "epsilon"),
    [(1_000_000, 105_000, 0.1), (1_000_000, 52_500, 0.55), (1_000_000, 500_000, 0.1), (100_000, 100_000, 0.1)],
)
def test_epsilon_reaches_its_final_value_at_step_105000_or_at_the_end(
    timesteps: int, step: int, epsilon: float
) -> None:
    assert epsilon_at(step, minatar_reference("MinAtar/Breakout-v1", timesteps)) == pytest.approx(epsilon)


def test_the_reference_config_file_is_the_reference() -> None:
    path = Path(__file__).resolve().parents[2] / "scripts" / "minatar_reference_1m.toml"
    assert read_config_file(path) == minatar_reference("MinAtar/Breakout-v1", 1_000_000)
