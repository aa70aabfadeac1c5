"""Greedy evaluation of stacked members: each plays its own env, one forward pass per step for all."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from dqn_tune.dqn.evaluation import EvalStats
from dqn_tune.dqn.stacked import StackedPolicy


def run_member_episodes(policy: StackedPolicy, envs: Sequence[gym.Env], episodes: int,
                        members: Sequence[int]) -> dict[int, EvalStats]:
    """Play `episodes` whole episodes on `envs[k]` for each k in `members`; their returns by member.

    Member k's episodes are those `run_episodes(policy_k, envs[k], episodes)` would play: the same
    resets of the same env, so batching changes nothing but the cost.
    """
    obs = np.zeros((len(envs), *envs[0].observation_space.shape), dtype=np.float32)
    totals = dict.fromkeys(members, 0.0)
    returns: dict[int, list[float]] = {k: [] for k in members}
    for k in members:
        obs[k], _ = envs[k].reset()
    playing = list(members)
    while playing:
        actions = policy(obs)
        still_playing = []
        for k in playing:
            next_obs, reward, terminated, truncated, _ = envs[k].step(actions[k])
            totals[k] += float(reward)
            if terminated or truncated:
                returns[k].append(totals[k])
                totals[k] = 0.0
                if len(returns[k]) == episodes:
                    continue
                next_obs, _ = envs[k].reset()
            obs[k] = next_obs
            still_playing.append(k)
        playing = still_playing
    return {k: EvalStats(tuple(member_returns)) for k, member_returns in returns.items()}
