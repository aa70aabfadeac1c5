"""ReplayBuffer: K members' preallocated ring buffers [K, N, ...], sampled as n-step returns.

The buffer stores one-step transitions with observations in their own shape and dtype, and builds
each sampled transition's n-step return when it is drawn. Which slots are drawn is the sampler's job:
uniform, or prioritized (prioritized.py); `make_replay_buffer` picks it from the config. Members step
together, so one write position serves all; member k draws from its own numpy Generator, so its
samples do not depend on the other members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.prioritized import PrioritizedSampler
from dqn_tune.dqn.random_state import generator_states, set_generator_states


class Batch(NamedTuple):
    """A minibatch of n-step transitions per member, tensors [K, batch, ...] on the update's device."""

    obs: torch.Tensor
    """Observations at the start, in their stored dtype."""
    actions: torch.Tensor
    """[K, batch, 1] int64."""
    rewards: torch.Tensor
    """r_t + gamma r_(t+1) + ... + gamma^(m-1) r_(t+m-1): the m <= n rewards up to the episode's end."""
    next_obs: torch.Tensor
    """The observation after the m-th step (the real one at a time-limit truncation)."""
    discounts: torch.Tensor
    """gamma^m, or 0 where the m-th step terminated the episode: what multiplies the bootstrap value."""
    weights: torch.Tensor | None
    """Importance-sampling weights with prioritized replay; None when sampling is uniform."""
    slots: np.ndarray
    """[K, batch] the slots drawn (prioritized replay updates their priorities)."""

    def env_values_finite(self, member: int) -> bool:
        """Whether what the env gave member `member` (observations, rewards) is finite: asked on a NaN loss, to
        tell the env's NaN from training's own divergence."""
        return all(bool(torch.isfinite(tensor[member]).all()) for tensor in (self.obs, self.rewards, self.next_obs))


class Sampler(Protocol):
    """Chooses which stored slots a minibatch holds."""

    def added(self, slot: int) -> None:
        """A transition was written to `slot` for every member."""

    def draw(self, size: int, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray | None]:
        """(slots [K, batch] among the first `size`, importance-sampling weights or None)."""

    def update(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        """The TD errors [K, batch] of the transitions in `slots`, after an update."""

    def state_dict(self) -> dict[str, Any]:
        """What the sampler has changed since it was made (numpy arrays and plain data), for a checkpoint."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()`'s output; ValueError (nothing changed) if it does not fit this sampler."""


class UniformSampler:
    """Every stored slot equally likely, with replacement."""

    def __init__(self, rngs: Sequence[np.random.Generator]) -> None:
        self.rngs = tuple(rngs)

    def added(self, slot: int) -> None:
        """Uniform sampling keeps no per-slot state."""

    def draw(self, size: int, batch_size: int, beta: float) -> tuple[np.ndarray, None]:
        """Slots drawn uniformly by each member's Generator; no weights."""
        if len(self.rngs) == 1:
            return self.rngs[0].integers(0, size, size=(1, batch_size)), None
        return np.stack([rng.integers(0, size, size=batch_size) for rng in self.rngs]), None

    def update(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        """Uniform sampling keeps no priorities."""

    def state_dict(self) -> dict[str, Any]:
        """The Generators' states."""
        return {"rngs": generator_states(self.rngs)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()`'s output."""
        set_generator_states(self.rngs, state["rngs"])


STORED = ("obs", "next_obs", "actions", "rewards", "terminated", "ended")
"""The buffer's arrays [K, N, ...], one entry per transition."""


class ReplayBuffer:
    """Ring buffers of capacity N for K members; the oldest transition is overwritten once full.

    `terminated` marks true terminal states only (a time-limit truncation is not one, so it bootstraps);
    `ended` marks every episode end (terminated or truncated).
    An n-step return sums rewards up to the first episode end and bootstraps unless that end is a
    termination, exactly as a one-step target does, and never reads past the newest transition (the
    write head): a window cut there bootstraps from the last stored step.
    """

    def __init__(
        self,
        capacity: int,
        observation: ObservationSpec,
        sampler: Sampler,
        *,
        members: int,
        n_steps: int = 1,
        gamma: float = 0.99,
    ) -> None:
        self.capacity = capacity
        self.obs = np.zeros((members, capacity, *observation.shape), dtype=observation.dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros((members, capacity, 1), dtype=np.int64)
        self.rewards = np.zeros((members, capacity), dtype=np.float32)
        self.terminated = np.zeros((members, capacity), dtype=bool)
        self.ended = np.zeros((members, capacity), dtype=bool)
        self.position = 0
        self.size = 0
        self.sampler = sampler
        self.n_steps = n_steps
        self.gamma = np.float32(gamma)
        self._powers = (gamma ** np.arange(n_steps + 1)).astype(np.float32)  # gamma^0 .. gamma^n
        self._rows = (np.arange(members) * capacity)[:, None]  # member k's rows in the flattened arrays
        # the arrays viewed as [K * N, ...], so that one fancy index gathers every member's rows
        self._flat = {
            name: array.reshape(-1, *array.shape[2:])
            for name, array in (
                ("obs", self.obs),
                ("next_obs", self.next_obs),
                ("actions", self.actions),
                ("rewards", self.rewards),
                ("terminated", self.terminated),
                ("ended", self.ended),
            )
        }

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays."""
        return sum(array.nbytes for array in self._flat.values())

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        ended: np.ndarray,
    ) -> None:
        """Store one transition per member (arrays [K, ...]), overwriting the oldest when full."""
        i = self.position
        self.obs[:, i] = obs
        self.actions[:, i, 0] = actions
        self.rewards[:, i] = rewards
        self.next_obs[:, i] = next_obs
        self.terminated[:, i] = terminated
        self.ended[:, i] = ended
        self.sampler.added(i)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device, *, beta: float = 1.0) -> Batch:
        """`batch_size` transitions per member as n-step returns, on `device` (beta: prioritized replay's)."""
        slots, weights = self.sampler.draw(self.size, batch_size, beta)
        flat, first = self._flat, slots + self._rows
        m: int | np.ndarray
        if self.n_steps == 1:
            last, rewards, m = first, flat["rewards"][first], 1
        else:
            last, rewards, m = self._n_step_returns(slots, first)
        discounts = np.where(flat["terminated"][last], np.float32(0), self._powers[m])
        arrays = (flat["obs"][first], flat["actions"][first], rewards, flat["next_obs"][last], discounts)
        obs, actions, returns, next_obs, bootstrap = (_tensor(array, device) for array in arrays)
        return Batch(
            obs, actions, returns, next_obs, bootstrap, None if weights is None else _tensor(weights, device), slots
        )

    def update_priorities(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        """Tell the sampler the TD errors [K, batch] of a sampled minibatch (prioritized replay's new priorities)."""
        self.sampler.update(slots, td_errors)

    def end_episode(self, member: int) -> None:
        """Mark member `member`'s newest transition as an episode end (a truncation: it bootstraps), for an episode
        cut short, so that no n-step return runs on into the next one."""
        if self.size:
            self.ended[member, self.position - 1] = True

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions (copies of the filled slots only), write position and the sampler's state."""
        filled = {name: getattr(self, name)[:, : self.size].copy() for name in STORED}
        return {**filled, "position": self.position, "size": self.size, "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()`'s output; ValueError, before anything changes, if it does not fit."""
        size, position = state["size"], state["position"]
        if not (
            isinstance(size, int)
            and isinstance(position, int)
            and 0 <= position < self.capacity
            and 0 <= size <= self.capacity
            and (size == self.capacity or position == size % self.capacity)
        ):
            raise ValueError(f"replay size {size!r} and position {position!r} do not fit a capacity of {self.capacity}")
        for name in STORED:
            array, stored = getattr(self, name), state[name]
            if (
                not isinstance(stored, np.ndarray)
                or stored.dtype != array.dtype
                or stored.shape != (array.shape[0], size, *array.shape[2:])
            ):
                raise ValueError(
                    f"replay {name} is not a {array.dtype} array of shape {[array.shape[0], size, *array.shape[2:]]}"
                )
        self.sampler.load_state_dict(state["sampler"])
        for name in STORED:
            getattr(self, name)[:, :size] = state[name]
        self.size, self.position = size, position

    def _n_step_returns(self, slots: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat index of each return's last step, discounted reward sums, steps m summed) for [K, batch] starts."""
        offsets = np.arange(self.n_steps)
        window = (slots[..., None] + offsets) % self.capacity + self._rows[..., None]  # [K, batch, n]
        stored = (self.position - 1 - slots) % self.capacity + 1  # steps from the start to the write head
        ended = self._flat["ended"][window]
        # step j counts while no episode ended before it and it is stored
        counted = (np.cumsum(ended, axis=-1) - ended == 0) & (offsets < stored[..., None])
        m = counted.sum(axis=-1)
        rewards = (self._flat["rewards"][window] * self._powers[:-1] * counted).sum(axis=-1, dtype=np.float32)
        last = np.take_along_axis(window, (m - 1)[..., None], axis=-1)[..., 0]
        return last, rewards, m


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """`array` on `device`: the buffer stays on the CPU; minibatches go to the networks' device."""
    tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device)


def make_replay_buffer(
    config: DQNConfig, observation: ObservationSpec, rngs: Sequence[np.random.Generator]
) -> ReplayBuffer:
    """The buffer `config` asks for: K = len(rngs) members, uniform or prioritized, n-step returns."""
    sampler: Sampler = (
        PrioritizedSampler(config.buffer_size, rngs, alpha=config.per_alpha, eps=config.per_eps)
        if config.prioritized_replay
        else UniformSampler(rngs)
    )
    return ReplayBuffer(
        config.buffer_size, observation, sampler, members=len(rngs), n_steps=config.n_steps, gamma=config.gamma
    )
