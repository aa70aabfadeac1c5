"""Shared fixtures."""

from __future__ import annotations

import pytest

from dqn_tune.dqn.config import DQNConfig


@pytest.fixture
def tiny_config() -> DQNConfig:
    """A CartPole config that trains in well under a second."""
    return DQNConfig(total_timesteps=600, learning_starts=100, batch_size=32, buffer_size=1_000, hidden_sizes=(16,),
                     target_update_interval=50, eval_freq=200, eval_curve_episodes=2, eval_episodes=2)
