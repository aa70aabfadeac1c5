"""ReplayBuffer on scripted transitions: ring wraparound, uniform sampling, n-step returns and their TD targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.loop import td_target
from dqn_tune.dqn.networks import make_q_network
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.replay import ReplayBuffer, UniformSampler, make_replay_buffer

CPU = torch.device("cpu")
SPEC = ObservationSpec.flat(2)


def scripted_buffer(capacity: int, count: int, seed: int = 0, members: int = 1) -> ReplayBuffer:
    """Transitions i = 0..count-1: obs (i, -i), action i % 3, reward i, next obs (i+1, -i-1), terminal when i % 4 == 3;
    member k's rewards are i + 100 k."""
    buffer = ReplayBuffer(
        capacity, SPEC, UniformSampler([np.random.default_rng(seed + k) for k in range(members)]), members=members
    )
    for i in range(count):
        ones = np.ones(members)
        buffer.add(
            np.array([[i, -i]] * members, dtype=np.float32),
            ones * (i % 3),
            i + 100 * np.arange(members),
            np.array([[i + 1, -i - 1]] * members, dtype=np.float32),
            ones * (i % 4 == 3),
            ones * (i % 4 == 3),
        )
    return buffer


def test_wraparound_overwrites_the_oldest_transitions() -> None:
    buffer = scripted_buffer(capacity=4, count=6)
    assert len(buffer) == 4
    assert buffer.position == 2
    np.testing.assert_array_equal(buffer.rewards[0], [4, 5, 2, 3])  # 4 and 5 replaced 0 and 1 in place
    np.testing.assert_array_equal(buffer.obs[0, :, 0], [4, 5, 2, 3])
    np.testing.assert_array_equal(buffer.next_obs[0, :, 1], [-5, -6, -3, -4])
    np.testing.assert_array_equal(buffer.actions[0, :, 0], [1, 2, 2, 0])
    np.testing.assert_array_equal(buffer.terminated[0], [False, False, False, True])


def test_size_grows_to_capacity_then_stays() -> None:
    assert [len(scripted_buffer(3, n)) for n in range(6)] == [0, 1, 2, 3, 3, 3]


def test_samples_are_whole_stored_transitions_with_batch_shapes_and_dtypes() -> None:
    batch = scripted_buffer(capacity=4, count=6).sample(256, CPU)
    assert batch.obs.shape == batch.next_obs.shape == (1, 256, 2)
    assert batch.actions.shape == (1, 256, 1) and batch.actions.dtype == torch.int64
    assert batch.rewards.shape == batch.discounts.shape == (1, 256) and batch.weights is None
    assert batch.obs.dtype == batch.rewards.dtype == batch.discounts.dtype == torch.float32
    i = batch.rewards[0]
    assert set(i.tolist()) == {2.0, 3.0, 4.0, 5.0}  # transitions 0 and 1 were overwritten
    torch.testing.assert_close(batch.obs[0, :, 0], i)
    torch.testing.assert_close(batch.next_obs[0, :, 1], -i - 1)
    torch.testing.assert_close(batch.actions[0, :, 0], i.long() % 3)
    torch.testing.assert_close(batch.discounts[0], torch.where(i.long() % 4 == 3, 0.0, np.float32(0.99)))
    np.testing.assert_array_equal(batch.slots[0], i.long().numpy() % 4)


def test_sampling_before_full_draws_only_stored_transitions() -> None:
    buffer = scripted_buffer(capacity=100, count=3)
    assert set(buffer.sample(300, CPU).rewards[0].tolist()) == {0.0, 1.0, 2.0}


def test_sampling_is_uniform_over_stored_indices() -> None:
    buffer = scripted_buffer(capacity=8, count=13)
    draws = 80_000
    counts = np.bincount(buffer.sample(draws, CPU).rewards.numpy().astype(int)[0], minlength=13)
    assert counts[:5].sum() == 0
    expected = draws / 8
    chi_square = float(((counts[5:] - expected) ** 2 / expected).sum())
    assert chi_square < 24.3  # 99.9th percentile of chi-square with 7 degrees of freedom


def test_sampling_uses_the_buffers_own_generator() -> None:
    first, second, other = (scripted_buffer(8, 13, seed=seed) for seed in (1, 1, 2))
    np.random.seed(0)
    a = first.sample(64, CPU).rewards
    np.random.seed(1)  # the global numpy RNG plays no part
    assert torch.equal(a, second.sample(64, CPU).rewards)
    assert not torch.equal(a, other.sample(64, CPU).rewards)


def test_members_keep_their_own_rows_and_draws() -> None:
    group = scripted_buffer(capacity=8, count=13, seed=5, members=3).sample(64, CPU)
    alone = scripted_buffer(capacity=8, count=13, seed=7).sample(64, CPU)  # member 2 of the group draws with seed 7
    assert torch.equal(group.rewards[2] - 200, alone.rewards[0])
    assert all(set((group.rewards[k] - 100 * k).tolist()) <= set(range(5, 13)) for k in range(3))


def test_a_sampled_batch_is_not_changed_by_later_adds() -> None:
    buffer = scripted_buffer(capacity=4, count=4)
    batch = buffer.sample(16, CPU)
    before = batch.obs.clone()
    for _ in range(4):
        buffer.add(
            np.zeros((1, 2), np.float32),
            np.zeros(1),
            -np.ones(1),
            np.zeros((1, 2), np.float32),
            np.zeros(1),
            np.zeros(1),
        )
    assert torch.equal(batch.obs, before)


def value_network(config: DQNConfig) -> torch.nn.Module:
    """A one-member network whose every Q-value is the observation itself: Q(s, a) = s for s > 0."""
    network = make_q_network(config, ObservationSpec.flat(1), n_actions=2)
    with torch.no_grad():
        for param in network.parameters():
            param.fill_(0.0)
        network.hidden_weights[0].fill_(1.0)
        network.head_weight.fill_(1.0)
    return network


# A 6-step episode: steps 1-4 cut by a time limit after step 4 (its real next observation 40), then steps 5-6,
# which terminate. Observation of step t is t, its reward t; gamma 0.5 keeps every sum exact in float32.
EPISODE = [
    (1, 1, 2, False, False),
    (2, 2, 3, False, False),
    (3, 3, 4, False, False),
    (4, 4, 40, False, True),
    (5, 5, 6, False, False),
    (6, 6, 7, True, True),
]
"""(obs, reward, next obs, terminated, episode ended)."""
TARGETS = {
    1: [1 + 0.5 * 2, 2 + 0.5 * 3, 3 + 0.5 * 4, 4 + 0.5 * 40, 5 + 0.5 * 6, 6],
    # n = 3: step 3's return stops at the truncation after 2 steps and bootstraps there (gamma^2 V(40));
    # step 5's stops at the termination after 2 steps: no bootstrap
    3: [
        1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4,
        2 + 0.5 * 3 + 0.25 * 4 + 0.125 * 40,
        3 + 0.5 * 4 + 0.25 * 40,
        4 + 0.5 * 40,
        5 + 0.5 * 6,
        6,
    ],
    # n = 5: the first episode (4 steps) is shorter than n
    5: [
        1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4 + 0.0625 * 40,
        2 + 0.5 * 3 + 0.25 * 4 + 0.125 * 40,
        3 + 0.5 * 4 + 0.25 * 40,
        4 + 0.5 * 40,
        5 + 0.5 * 6,
        6,
    ],
}


@pytest.mark.parametrize("n_steps", [1, 3, 5])
@pytest.mark.parametrize("double_dqn", [False, True])
def test_n_step_targets_equal_the_hand_computed_values(n_steps: int, double_dqn: bool) -> None:
    config = DQNConfig(gamma=0.5, n_steps=n_steps, buffer_size=8, batch_size=8, hidden_sizes=(1,))
    buffer = make_replay_buffer(config, ObservationSpec.flat(1), [np.random.default_rng(0)])
    for obs, reward, next_obs, terminated, ended in EPISODE:
        buffer.add(
            np.array([[obs]], np.float32),
            np.zeros(1),
            np.array([reward]),
            np.array([[next_obs]], np.float32),
            np.array([terminated]),
            np.array([ended]),
        )
    network = value_network(config)
    batch = buffer.sample(400, CPU)
    targets = td_target(batch, network, network, double_dqn)[0]
    by_step = {int(obs): float(target) for obs, target in zip(batch.obs[0, :, 0], targets, strict=True)}
    assert sorted(by_step) == [1, 2, 3, 4, 5, 6]
    assert [by_step[step] for step in range(1, 7)] == TARGETS[n_steps]


def test_an_n_step_return_never_reads_past_the_newest_transition() -> None:
    # one long episode in a ring of 4: the slot after the newest holds the oldest transition, of long ago
    config = DQNConfig(gamma=0.5, n_steps=3, buffer_size=4, batch_size=4, hidden_sizes=(1,))
    buffer = make_replay_buffer(config, ObservationSpec.flat(1), [np.random.default_rng(0)])
    for t in range(1, 7):
        buffer.add(
            np.array([[t]], np.float32),
            np.zeros(1),
            np.array([t]),
            np.array([[t + 1]], np.float32),
            np.zeros(1),
            np.zeros(1),
        )
    network = value_network(config)
    batch = buffer.sample(200, CPU)
    by_step = {
        int(obs): float(target)
        for obs, target in zip(batch.obs[0, :, 0], td_target(batch, network, network, False)[0], strict=True)
    }
    assert by_step == {
        3: 3 + 0.5 * 4 + 0.25 * 5 + 0.125 * 6,
        4: 4 + 0.5 * 5 + 0.25 * 6 + 0.125 * 7,
        5: 5 + 0.5 * 6 + 0.25 * 7,
        6: 6 + 0.5 * 7,
    }
