"""Greedy evaluation: K members each play whole episodes on their own env, one forward pass per step for all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from dqn_tune.dqn.config import check_seed
from dqn_tune.dqn.networks.base import QNetwork

Policy = Callable[[np.ndarray], list[int]]
"""act(observations [K, *obs_shape]) -> one action per member."""


@dataclass(frozen=True, slots=True)
class EvalStats:
    """Returns of a set of evaluation episodes."""

    returns: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean episode return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Standard deviation of the episode returns."""
        return float(np.std(self.returns))


def greedy_policy(q_network: QNetwork) -> Policy:
    """The policy taking each member's argmax-Q action for its own observation, without autograd."""
    device = next(q_network.parameters()).device
    observation = q_network.observation
    obs_array = np.zeros((q_network.members, 1, *observation.shape), dtype=observation.dtype)
    obs_tensor = torch.from_numpy(obs_array)  # shares memory: writing obs_array fills it without allocating
    obs_array = obs_array[:, 0]
    on_cpu = device.type == "cpu"

    def act(obs: np.ndarray) -> list[int]:
        obs_array[:] = obs
        with torch.inference_mode():
            return q_network(obs_tensor if on_cpu else obs_tensor.to(device)).argmax(dim=2).view(-1).tolist()

    return act


def run_episodes(
    policy: Policy,
    envs: Sequence[gym.Env],
    episodes: int,
    *,
    members: Sequence[int] | None = None,
    seed: int | None = None,
) -> dict[int, EvalStats]:
    """Play `episodes` whole episodes on `envs[k]` for each k in `members` (default: all); returns by member.

    The first reset of each env uses `seed` (0 to 2**32 - 1, or None: the env's own sequence goes on).
    Member k's episodes do not depend on which other members play: batching changes only the cost.
    """
    if seed is not None:
        check_seed(seed)
    members = range(len(envs)) if members is None else members
    space = envs[0].observation_space
    if space.shape is None:
        raise TypeError(f"expected envs with a Box observation space, as make_env checks; got {space}")
    obs = np.zeros((len(envs), *space.shape), dtype=space.dtype)
    totals = dict.fromkeys(members, 0.0)
    returns: dict[int, list[float]] = {k: [] for k in members}
    for k in members:
        obs[k], _ = envs[k].reset(seed=seed)
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
