"""Greedy evaluation: run a policy for whole episodes and collect their returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from dqn_tune.dqn.config import check_seed
from dqn_tune.dqn.network import QNetwork

Policy = Callable[[np.ndarray], int]


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
    """The policy that takes the argmax-Q action, computed without autograd."""
    obs_tensor = torch.zeros(1, q_network.obs_dim)
    obs_array = obs_tensor.numpy()  # shares memory: writing it fills the tensor without allocating

    def act(obs: np.ndarray) -> int:
        obs_array[0] = obs
        with torch.inference_mode():
            return int(q_network(obs_tensor).argmax())

    return act


def run_episodes(policy: Policy, env: gym.Env, episodes: int, *, seed: int | None = None) -> EvalStats:
    """Play `episodes` full episodes with `policy`; the first reset uses `seed` (0 to 2**32 - 1, or None)."""
    if seed is not None:
        check_seed(seed)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return EvalStats(tuple(returns))
