"""Prioritized replay: sampling frequencies, importance-sampling weights and priority updates, per member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.prioritized import PrioritizedSampler, SumTree
from dqn_tune.dqn.replay import make_replay_buffer

ALPHA, EPS = 0.6, 1e-6
DRAWS = 200_000


def sampler_with(td_errors: np.ndarray, seed: int = 0) -> PrioritizedSampler:
    """A sampler over len(td_errors[k]) slots whose priorities come from these TD errors, one row per member."""
    members, slots = td_errors.shape
    sampler = PrioritizedSampler(slots, [np.random.default_rng(seed + k) for k in range(members)], alpha=ALPHA, eps=EPS)
    for slot in range(slots):
        sampler.added(slot)
    sampler.draw(slots, 1, 1.0)  # the new slots enter the tree at the largest priority (1.0)
    sampler.update(np.tile(np.arange(slots), (members, 1)), td_errors)
    return sampler


def expected_probabilities(td_errors: np.ndarray) -> np.ndarray:
    priorities = (np.abs(td_errors) + EPS) ** ALPHA
    return priorities / priorities.sum(axis=1, keepdims=True)


def frequencies(sampler: PrioritizedSampler, size: int) -> np.ndarray:
    slots, _ = sampler.draw(size, DRAWS, 1.0)
    return np.stack([np.bincount(row, minlength=size) / DRAWS for row in slots])


def test_each_slot_is_drawn_in_proportion_to_its_priority_to_the_alpha() -> None:
    td_errors = np.array([[0.1, 2.0, 0.5, 0.0, 5.0, 1.0, 0.3, 3.0, 0.05, 1.5, 0.7]])
    observed = frequencies(sampler_with(td_errors), 11)
    assert np.abs(observed - expected_probabilities(td_errors)).max() < 0.01


def test_each_member_draws_from_its_own_priorities() -> None:
    rng = np.random.default_rng(3)
    td_errors = rng.exponential(size=(3, 13)) * np.array([[1.0], [10.0], [0.1]])
    td_errors[1, 4] = 50.0  # member 1 has one dominant slot, the others do not
    observed = frequencies(sampler_with(td_errors), 13)
    assert np.abs(observed - expected_probabilities(td_errors)).max() < 0.01
    assert observed[1, 4] > 2 * observed[0, 4]


def test_importance_sampling_weights_are_the_formula_normalised_by_their_maximum() -> None:
    td_errors = np.array([[0.1, 2.0, 0.5, 0.0, 5.0, 1.0], [1.0, 1.0, 1.0, 4.0, 0.2, 0.2]])
    sampler = sampler_with(td_errors)
    slots, weights = sampler.draw(6, 64, 0.4)
    probabilities = expected_probabilities(td_errors)[np.arange(2)[:, None], slots]
    formula = (6 * probabilities) ** -0.4
    np.testing.assert_allclose(weights, formula / formula.max(axis=1, keepdims=True), rtol=1e-6)
    assert weights.dtype == np.float32 and np.isclose(weights.max(axis=1), 1.0).all()


def test_updates_change_the_priorities_and_new_transitions_get_the_largest() -> None:
    sampler = sampler_with(np.array([[1.0, 1.0, 1.0, 1.0]]))
    sampler.update(np.array([[2]]), np.array([[9.0]]))
    leaves = sampler.tree.nodes[0, sampler.tree.leaves : sampler.tree.leaves + 4]
    np.testing.assert_allclose(leaves, (np.array([1.0, 1.0, 9.0, 1.0]) + EPS) ** ALPHA)
    assert sampler.tree.totals[0] == pytest.approx(leaves.sum(), rel=1e-12)
    assert sampler.max_priority[0] == 9.0 + EPS
    sampler.added(0)  # slot 0 rewritten: it gets the largest priority so far
    sampler.draw(4, 1, 1.0)
    np.testing.assert_allclose(sampler.tree.nodes[0, sampler.tree.leaves], (9.0 + EPS) ** ALPHA)


def test_the_sum_tree_finds_the_slot_of_each_prefix_sum() -> None:
    tree = SumTree(members=2, capacity=5)
    tree.set(np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]), np.array([[1.0, 2.0, 0.0, 3.0, 4.0], [5.0, 0, 0, 0, 1]]))
    assert list(tree.totals) == [10.0, 6.0]
    found = tree.find(np.array([[0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99], [0.0, 4.99, 5.0, 5.5, 0, 0, 0, 0]]))
    assert found.tolist() == [[0, 0, 1, 1, 3, 3, 4, 4], [0, 0, 4, 4, 0, 0, 0, 0]]


def test_the_buffer_samples_with_weights_and_updates_its_members_priorities() -> None:
    config = DQNConfig(prioritized_replay=True, buffer_size=16, batch_size=8)
    buffer = make_replay_buffer(config, ObservationSpec.flat(1), [np.random.default_rng(k) for k in range(2)])
    for t in range(10):
        buffer.add(
            np.full((2, 1), t, np.float32),
            np.zeros(2),
            np.zeros(2),
            np.zeros((2, 1), np.float32),
            np.zeros(2),
            np.zeros(2),
        )
    batch = buffer.sample(8, torch.device("cpu"), beta=0.5)
    assert batch.weights is not None and batch.weights.shape == (2, 8)
    assert torch.equal(batch.weights, torch.ones(2, 8))  # every new transition has the same (largest) priority
    errors = np.zeros((2, 8))
    errors[0] = 3.0  # member 0's sampled slots now outweigh the others; member 1's priorities are its own
    buffer.update_priorities(batch.slots, errors)
    leaves = buffer.sampler.tree.nodes[:, buffer.sampler.tree.leaves :][:, :10]
    assert set(np.round(leaves[0, batch.slots[0]], 6)) == {round((3.0 + config.per_eps) ** config.per_alpha, 6)}
    assert set(np.round(leaves[1, batch.slots[1]], 6)) == {round(config.per_eps**config.per_alpha, 6)}
