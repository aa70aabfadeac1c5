"""The learning test: the default config solves CartPole-v1 in its default 50,000 steps."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import train

SEEDS = (0, 1, 2)
SOLVED = 475.0


@pytest.mark.slow
def test_default_config_solves_cartpole_for_at_least_two_of_three_seeds() -> None:
    config = DQNConfig()
    assert (config.env_id, config.total_timesteps, config.eval_episodes) == ("CartPole-v1", 50_000, 20)
    # Two worker processes (one torch thread each); spawn, so no forked torch thread pools.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = [future.result() for future in [pool.submit(train, config, seed=seed) for seed in SEEDS]]
    returns = {result.seed: result.mean_return for result in results}
    for result in results:
        curve = [round(point.mean_return) for point in result.curve]
        print(f"seed {result.seed}: greedy mean return {result.mean_return:.1f} over 20 episodes of the weights of "
              f"step {result.selected_step} ({result.wall_time_s:.0f} s, curve {curve})")
    assert sum(value >= SOLVED for value in returns.values()) >= 2, returns
