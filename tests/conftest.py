"""Shared fixtures."""

from __future__ import annotations

import signal

import pytest

from dqn_tune.dqn.config import DQNConfig

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # A non-interactive shell starts background jobs (`.ci/run &`) with SIGINT ignored, and every command
    # these tests start would inherit that, so the tests of Ctrl-C would fail. exec resets a caught signal
    # to its default: catching it here gives the commands Python's usual KeyboardInterrupt again.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def tiny_config() -> DQNConfig:
    """A CartPole config that trains in well under a second."""
    return DQNConfig(total_timesteps=600, learning_starts=100, batch_size=32, buffer_size=1_000, hidden_sizes=(16,),
                     target_update_interval=50, eval_freq=200, eval_curve_episodes=2, eval_episodes=2)
