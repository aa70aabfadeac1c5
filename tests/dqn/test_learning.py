"""The learning test: the default config solves CartPole-v1 in its default 50,000 steps."""

from __future__ import annotations

import pytest

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import train_seeds

SEEDS = [0, 1, 2]
SOLVED = 475.0


@pytest.mark.slow
def test_default_config_solves_cartpole_for_at_least_two_of_three_seeds() -> None:
    """Trained as one batched group (`train_seeds`, what tuning, validation and retrain run): `train(config, seed)`
    is the same loop with one member, and each member follows it step for step (test_batched.py), so this holds
    both to the bar, in one process and less CPU than three `train` runs. Measured: 500.0, 500.0, 500.0."""
    config = DQNConfig()
    assert (config.env_id, config.total_timesteps, config.eval_episodes) == ("CartPole-v1", 50_000, 20)
    results = train_seeds(config, SEEDS)
    for result in results:
        curve = [round(point.mean_return) for point in result.curve]
        print(
            f"seed {result.seed}: greedy mean return {result.mean_return:.1f} over 20 episodes of the weights of "
            f"step {result.selected_step} (curve {curve})"
        )
    returns = {result.seed: result.mean_return for result in results}
    assert sum(value >= SOLVED for value in returns.values()) >= 2, returns


BREAKOUT = DQNConfig(
    env_id="MinAtar/Breakout-v1",
    total_timesteps=40_000,
    learning_starts=1_000,
    batch_size=32,
    buffer_size=50_000,
    target_update_interval=500,
    train_freq=4,
    exploration_fraction=0.5,
    exploration_final_eps=0.05,
    eval_freq=8_000,
    eval_episodes=20,
)
"""A short MinAtar Breakout run: a uniformly random policy returns 0.47 there (200 episodes)."""


@pytest.mark.slow
def test_minatar_breakout_is_learned_from_its_grids() -> None:
    """The CNN family on the env it was built for: four times the random policy's return after 40,000 steps.
    Measured: 5.15 (seed 0) and 4.8 (seed 1), 33-34 CPU-seconds each."""
    pytest.importorskip("minatar", reason="MinAtar is an optional extra: pip install -e '.[minatar]'")
    (result,) = train_seeds(BREAKOUT, [0])
    print(f"greedy mean return {result.mean_return:.2f}, curve {[point.mean_return for point in result.curve]}")
    assert result.mean_return >= 2.0
