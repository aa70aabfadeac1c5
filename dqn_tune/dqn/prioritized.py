"""Proportional prioritized replay (Schaul et al. 2016) for K members: a sum tree per member, vectorised.

Member k samples slot i with probability p_i^alpha / sum_j p_j^alpha, where p_i = |TD error| + eps from
the last update that sampled it (new transitions get the member's largest p so far, so each is seen
soon). Every operation runs on all members and the whole minibatch at once: a draw walks the trees
from the root to the leaves in log2(N) vectorised steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dqn_tune.dqn.random_state import generator_states, set_generator_states


class SumTree:
    """K binary trees over `capacity` leaves; each inner node holds the sum of its two children.

    Node 1 is a root, node n's children are 2n and 2n + 1, and slot i is leaf `leaves + i`; the K trees
    are rows of one array, so one fancy index reaches the same node of every member.
    """

    def __init__(self, members: int, capacity: int) -> None:
        self.leaves = 1 << max(capacity - 1, 0).bit_length()  # a power of two >= capacity
        self.depth = self.leaves.bit_length() - 1
        self.nodes = np.zeros((members, 2 * self.leaves))
        self._flat = self.nodes.reshape(-1)
        self._rows = (np.arange(members) * 2 * self.leaves)[:, None]

    @property
    def totals(self) -> np.ndarray:
        """Each member's sum over all slots, [K]."""
        return self.nodes[:, 1]

    def set(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Set member k's leaves `slots[k]` to `values[k]` ([K, n], or broadcastable), then the sums above them."""
        node = slots + self.leaves
        self._flat[node + self._rows] = values
        for _ in range(self.depth):
            node = node >> 1
            left = 2 * node + self._rows
            self._flat[node + self._rows] = self._flat[left] + self._flat[left + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each mass m in [0, member's total) ([K, n]): the slot whose prefix-sum interval holds m."""
        node = np.ones(mass.shape, dtype=np.int64)
        mass = mass.copy()
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self._flat[left + self._rows]
            right = mass >= left_sum
            mass -= left_sum * right
            node = left + right
        return node - self.leaves


class PrioritizedSampler:
    """Draws minibatches in proportion to priority^alpha, each member with its own Generator."""

    def __init__(self, capacity: int, rngs: Sequence[np.random.Generator], *, alpha: float, eps: float) -> None:
        self.tree = SumTree(len(rngs), capacity)
        self.alpha = alpha
        self.eps = eps
        self.max_priority = np.ones(len(rngs))
        """Each member's largest p = |TD error| + eps so far: new transitions get it."""
        self.rngs = tuple(rngs)
        self._new: list[int] = []  # slots written since the last draw: their tree sums are updated together
        self._uniform = np.zeros((len(rngs), 0))

    def added(self, slot: int) -> None:
        """A transition was written to `slot` (every member's): it gets the member's largest priority."""
        self._new.append(slot)

    def draw(self, size: int, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """(slots [K, batch], importance-sampling weights [K, batch]) among the first `size` slots.

        Weight of slot i: (size * P(i))^-beta, divided by the largest in the member's minibatch, so that
        weights only ever scale an update down.
        """
        if self._new:
            slots = np.array(self._new)[None]
            self.tree.set(slots, (self.max_priority[:, None] ** self.alpha))
            self._new.clear()
        if self._uniform.shape[1] != batch_size:
            self._uniform = np.zeros((len(self.rngs), batch_size))
        for k, rng in enumerate(self.rngs):
            rng.random(out=self._uniform[k])
        slots = self.tree.find(self._uniform * self.tree.totals[:, None])
        np.minimum(slots, size - 1, out=slots)  # rounding can walk past the last stored slot
        priorities = self.tree.nodes[np.arange(len(self.rngs))[:, None], slots + self.tree.leaves]
        # (N P(i))^-beta / max_j (N P(j))^-beta == (min_j p_j / p_i)^beta: N and the total cancel
        weights = (priorities.min(axis=1, keepdims=True) / priorities) ** beta
        return slots, weights.astype(np.float32)

    def update(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities |TD error| + eps for the sampled `slots` ([K, batch] each)."""
        priorities = np.abs(td_errors, dtype=np.float64) + self.eps
        np.maximum(self.max_priority, priorities.max(axis=1), out=self.max_priority)
        self.tree.set(slots, priorities**self.alpha)

    def state_dict(self) -> dict[str, Any]:
        """The sum trees, largest priorities, slots written since the last draw and the Generators' states."""
        return {
            "nodes": self.tree.nodes.copy(),
            "max_priority": self.max_priority.copy(),
            "new": list(self._new),
            "rngs": generator_states(self.rngs),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()`'s output; ValueError, before anything changes, if it does not fit."""
        nodes, max_priority, new = state["nodes"], state["max_priority"], state["new"]
        for name, stored, array in (
            ("nodes", nodes, self.tree.nodes),
            ("max_priority", max_priority, self.max_priority),
        ):
            if not isinstance(stored, np.ndarray) or stored.dtype != array.dtype or stored.shape != array.shape:
                raise ValueError(f"prioritized replay {name} is not a {array.dtype} array of shape {list(array.shape)}")
        if not isinstance(new, list) or not all(isinstance(slot, int) and 0 <= slot < self.tree.leaves for slot in new):
            raise ValueError("prioritized replay's new slots are not a list of slot numbers")
        set_generator_states(self.rngs, state["rngs"])
        self.tree.nodes[:] = nodes
        self.max_priority[:] = max_priority
        self._new[:] = new
