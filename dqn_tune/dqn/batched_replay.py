"""MemberReplayBuffer: K replay ring buffers of one capacity, filled in lockstep, sampled as one batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dqn_tune.dqn.replay import Batch


class MemberReplayBuffer:
    """One ring buffer of capacity N per member, stored as arrays with a leading member axis [K, N, ...].

    Members step together, so one write position serves all. Member k samples its indices from its
    own Generator exactly as `ReplayBuffer.sample` does, so its draws do not depend on the others.
    As in ReplayBuffer, `terminated` is 0 for time-limit truncations, which therefore bootstrap.
    """

    def __init__(self, capacity: int, obs_dim: int, rngs: Sequence[np.random.Generator]) -> None:
        n_members = len(rngs)
        self.capacity = capacity
        self.obs = np.zeros((n_members, capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((n_members, capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((n_members, capacity, 1), dtype=np.int64)
        self.rewards = np.zeros((n_members, capacity), dtype=np.float32)
        self.terminated = np.zeros((n_members, capacity), dtype=np.float32)
        self.position = 0
        self.size = 0
        self._rngs = tuple(rngs)
        self._row_offsets = (np.arange(n_members) * capacity)[:, None]  # member k's rows in the flattened arrays

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Store one transition per member (arrays of shape [K, ...]), overwriting the oldest when full."""
        i = self.position
        self.obs[:, i] = obs
        self.actions[:, i, 0] = actions
        self.rewards[:, i] = rewards
        self.next_obs[:, i] = next_obs
        self.terminated[:, i] = terminated
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device) -> Batch:
        """`batch_size` transitions per member, uniformly with replacement; tensors shaped [K, batch, ...]."""
        idx = np.stack([rng.integers(0, self.size, size=batch_size) for rng in self._rngs]) + self._row_offsets
        return Batch(*(torch.from_numpy(_rows(array)[idx]).to(device)
                       for array in (self.obs, self.actions, self.rewards, self.next_obs, self.terminated)))


def _rows(array: np.ndarray) -> np.ndarray:
    """`array` [K, N, ...] viewed as [K * N, ...]."""
    return array.reshape(-1, *array.shape[2:])
