"""ReplayBuffer: a preallocated ring buffer of transitions, sampled uniformly by index."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    """A sampled minibatch; tensors share memory with freshly gathered numpy arrays."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor

    def member(self, k: int) -> Batch:
        """Member k's minibatch of a batch with a leading member axis."""
        return Batch(*(tensor[k] for tensor in self))

    def env_values_finite(self) -> bool:
        """Whether what the env returned (observations, rewards) is finite: called on a NaN loss, to tell the env's
        NaN from training's own divergence."""
        return all(bool(torch.isfinite(tensor).all()) for tensor in (self.obs, self.rewards, self.next_obs))


class ReplayBuffer:
    """Ring buffer of capacity N; the oldest transition is overwritten once it is full.

    `terminated` marks true terminal states only: a time-limit truncation is stored as not
    terminated, so the TD target still bootstraps from its real next observation.
    """

    def __init__(self, capacity: int, obs_dim: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, 1), dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.position = 0
        self.size = 0
        self._rng = rng

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        """Store one transition, overwriting the oldest when full."""
        i = self.position
        self.obs[i] = obs
        self.actions[i, 0] = action
        self.rewards[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = terminated
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        """Sample `batch_size` stored transitions uniformly, with replacement."""
        idx = self._rng.integers(0, self.size, size=batch_size)
        return Batch(
            obs=torch.from_numpy(self.obs[idx]),
            actions=torch.from_numpy(self.actions[idx]),
            rewards=torch.from_numpy(self.rewards[idx]),
            next_obs=torch.from_numpy(self.next_obs[idx]),
            terminated=torch.from_numpy(self.terminated[idx]),
        )
