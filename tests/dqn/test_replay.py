"""ReplayBuffer on scripted transitions: ring wraparound and uniform sampling by index."""

from __future__ import annotations

import numpy as np
import torch

from dqn_tune.dqn.replay import ReplayBuffer


def scripted_buffer(capacity: int, count: int, seed: int = 0) -> ReplayBuffer:
    """A buffer fed transitions i = 0..count-1 with obs (i, -i), action i % 3, reward i, next obs (i+1, -i-1)."""
    buffer = ReplayBuffer(capacity, obs_dim=2, rng=np.random.default_rng(seed))
    for i in range(count):
        buffer.add(np.array([i, -i], dtype=np.float32), i % 3, float(i), np.array([i + 1, -i - 1], dtype=np.float32),
                   terminated=i % 4 == 3)
    return buffer


def test_wraparound_overwrites_the_oldest_transitions() -> None:
    buffer = scripted_buffer(capacity=4, count=6)
    assert len(buffer) == 4
    assert buffer.position == 2
    np.testing.assert_array_equal(buffer.rewards, [4, 5, 2, 3])  # 4 and 5 replaced 0 and 1 in place
    np.testing.assert_array_equal(buffer.obs[:, 0], [4, 5, 2, 3])
    np.testing.assert_array_equal(buffer.next_obs[:, 1], [-5, -6, -3, -4])
    np.testing.assert_array_equal(buffer.actions[:, 0], [1, 2, 2, 0])
    np.testing.assert_array_equal(buffer.terminated, [0, 0, 0, 1])


def test_size_grows_to_capacity_then_stays() -> None:
    assert [len(scripted_buffer(3, n)) for n in range(6)] == [0, 1, 2, 3, 3, 3]


def test_samples_are_whole_stored_transitions_with_batch_shapes_and_dtypes() -> None:
    batch = scripted_buffer(capacity=4, count=6).sample(256)
    assert batch.obs.shape == batch.next_obs.shape == (256, 2)
    assert batch.actions.shape == (256, 1) and batch.actions.dtype == torch.int64
    assert batch.rewards.shape == batch.terminated.shape == (256,)
    assert batch.obs.dtype == batch.rewards.dtype == batch.terminated.dtype == torch.float32
    i = batch.rewards
    assert set(i.tolist()) == {2.0, 3.0, 4.0, 5.0}  # transitions 0 and 1 were overwritten
    torch.testing.assert_close(batch.obs[:, 0], i)
    torch.testing.assert_close(batch.next_obs[:, 1], -i - 1)
    torch.testing.assert_close(batch.actions[:, 0], i.long() % 3)
    torch.testing.assert_close(batch.terminated, (i.long() % 4 == 3).float())


def test_sampling_before_full_draws_only_stored_transitions() -> None:
    buffer = scripted_buffer(capacity=100, count=3)
    assert set(buffer.sample(300).rewards.tolist()) == {0.0, 1.0, 2.0}


def test_sampling_is_uniform_over_stored_indices() -> None:
    buffer = scripted_buffer(capacity=8, count=13)
    draws = 80_000
    counts = np.bincount(buffer.sample(draws).rewards.numpy().astype(int), minlength=13)
    assert counts[:5].sum() == 0
    expected = draws / 8
    chi_square = float(((counts[5:] - expected) ** 2 / expected).sum())
    assert chi_square < 24.3  # 99.9th percentile of chi-square with 7 degrees of freedom


def test_sampling_uses_the_buffers_own_generator() -> None:
    first, second, other = (scripted_buffer(8, 13, seed=seed) for seed in (1, 1, 2))
    np.random.seed(0)
    a = first.sample(64).rewards
    np.random.seed(1)  # the global numpy RNG plays no part
    assert torch.equal(a, second.sample(64).rewards)
    assert not torch.equal(a, other.sample(64).rewards)


def test_a_sampled_batch_is_not_changed_by_later_adds() -> None:
    buffer = scripted_buffer(capacity=4, count=4)
    batch = buffer.sample(16)
    before = batch.obs.clone()
    for _ in range(4):
        buffer.add(np.zeros(2, np.float32), 0, -1.0, np.zeros(2, np.float32), terminated=False)
    assert torch.equal(batch.obs, before)
