"""train() on real gymnasium envs: bookkeeping, target updates, bootstrapping, determinism, divergence."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from dqn_tune.dqn.agent import Agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.envs import make_env
from dqn_tune.dqn.evaluation import run_episodes
from dqn_tune.dqn.loop import epsilon_at, per_beta_at, update_target
from dqn_tune.dqn.networks import make_q_network
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.dqn.trainer import TrainResult, train, train_seeds
from dqn_tune.errors import ConfigError, DivergenceError


class CycleEnv(gym.Env[np.ndarray, np.int64]):
    """States 0 -> 1 -> 2 -> 0 ... whatever the action; leaving the last state pays 1, the others 0.

    Observations are one-hot, and episodes start in a uniformly random state, so every state is
    seen both as a start and as a next state. Bootstrapping every step from the real next state
    gives Q(s) = gamma^(n-1-s) / (1 - gamma^n) for n states; stopping at every step gives Q(s) = reward(s).
    """

    n_states = 3

    def __init__(self, terminate: bool, render_mode: str | None = None) -> None:
        self.terminate = terminate
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.n_states,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.state = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.state = int(self.np_random.integers(self.n_states))
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = 1.0 if self.state == self.n_states - 1 else 0.0
        self.state = (self.state + 1) % self.n_states
        return self._obs(), reward, self.terminate, False, {}

    def _obs(self) -> np.ndarray:
        return np.eye(self.n_states, dtype=np.float32)[self.state]


CYCLE_TRUNCATED = "dqn_tune_test/CycleTruncated-v0"
"""One step per episode, cut by the time limit: truncated, never terminated."""
CYCLE_TERMINATED = "dqn_tune_test/CycleTerminated-v0"
"""One step per episode, which terminates it."""
gym.register(CYCLE_TRUNCATED, entry_point=CycleEnv, kwargs={"terminate": False}, max_episode_steps=1)
gym.register(CYCLE_TERMINATED, entry_point=CycleEnv, kwargs={"terminate": True})


class NanRewardEnv(CycleEnv):
    """CycleEnv whose every reward is NaN, as a broken env's."""

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


NAN_REWARD = "dqn_tune_test/NanReward-v0"
gym.register(NAN_REWARD, entry_point=NanRewardEnv, kwargs={"terminate": False}, max_episode_steps=5)


def q_values(result: TrainResult, observations: np.ndarray) -> np.ndarray:
    """The trained network's Q-values for a batch of observations."""
    return Agent.from_result(result).q_values(observations)


def test_a_tiny_run_reports_consistent_bookkeeping(tiny_config: DQNConfig) -> None:
    result = train(tiny_config, seed=0)
    assert result.steps == 600 and not result.stopped_early
    assert result.updates == (600 - 100) // tiny_config.train_freq  # one per train_freq steps after learning_starts
    assert [p.step for p in result.curve] == [200, 400, 600]
    assert len(result.final_eval.returns) == 2 and result.selected_step in [p.step for p in result.curve]
    assert len(result.episode_returns) == len(result.episode_end_steps) > 0
    assert list(result.episode_end_steps) == sorted(result.episode_end_steps)
    assert sum(result.episode_returns) <= 600  # CartPole pays 1 per step
    assert result.steps_per_second > 0 and result.wall_time_s > 0
    record = RunRecord.from_result(result)
    assert RunRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert record.curve_steps == (200, 400, 600) and record.mean_return == result.mean_return


@pytest.mark.parametrize(
    ("train_freq", "gradient_steps", "expected"), [(1, 1, 500), (4, 1, 125), (4, 3, 375), (7, 2, 142)]
)
def test_updates_follow_train_freq_and_gradient_steps(
    tiny_config: DQNConfig, train_freq: int, gradient_steps: int, expected: int
) -> None:
    config = tiny_config.replace(train_freq=train_freq, gradient_steps=gradient_steps, eval_freq=0)
    assert train(config, seed=0).updates == expected


@pytest.mark.parametrize(("interval", "expected"), [(50, 12), (256, 2), (600, 1), (601, 0), (1, 600)])
def test_target_network_updates_every_target_update_interval_steps(
    tiny_config: DQNConfig, interval: int, expected: int
) -> None:
    config = tiny_config.replace(target_update_interval=interval, train_freq=4, eval_freq=0)
    assert train(config, seed=0).target_updates == expected


def test_update_target_copies_with_tau_one_and_averages_below() -> None:
    config = DQNConfig(hidden_sizes=(8,))
    online, target = (make_q_network(config, ObservationSpec.flat(3), 2, 2, seeds=seeds) for seeds in ([0, 1], [2, 3]))
    before = [p.detach().clone() for p in target.parameters()]
    update_target(online, target, tau=0.25)
    for old, new, src in zip(before, target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * src)
    update_target(online, target, tau=1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters(), strict=True))


def test_epsilon_decays_linearly_then_stays() -> None:
    config = DQNConfig(
        total_timesteps=1_000,
        exploration_fraction=0.5,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.1,
        learning_starts=0,
    )
    assert [round(epsilon_at(step, config), 6) for step in (0, 250, 500, 750, 1_000)] == [1.0, 0.55, 0.1, 0.1, 0.1]


def test_per_beta_anneals_linearly_to_one_over_the_run() -> None:
    config = DQNConfig(total_timesteps=1_000, per_beta=0.4, learning_starts=0)
    assert [round(per_beta_at(step, config), 6) for step in (0, 500, 1_000)] == [0.4, 0.7, 1.0]


def cycle_config(env_id: str) -> DQNConfig:
    """A config that learns the toy cycle's Q-values to within 0.02 in 1,000 steps."""
    return DQNConfig(
        env_id=env_id,
        total_timesteps=1_000,
        learning_starts=100,
        gamma=0.5,
        learning_rate=3e-3,
        batch_size=32,
        buffer_size=1_000,
        hidden_sizes=(32,),
        target_update_interval=100,
        train_freq=1,
        exploration_fraction=0.1,
        eval_freq=0,
        eval_episodes=1,
    )


def test_truncation_bootstraps_from_the_real_next_observation() -> None:
    gamma, n = 0.5, CycleEnv.n_states
    expected = np.array([gamma ** (n - 1 - s) / (1 - gamma**n) for s in range(n)])  # 0.286, 0.571, 1.143
    q = q_values(train(cycle_config(CYCLE_TRUNCATED), seed=0), np.eye(n, dtype=np.float32))
    np.testing.assert_allclose(q, np.repeat(expected[:, None], 2, axis=1), atol=0.02)


def test_termination_does_not_bootstrap() -> None:
    n = CycleEnv.n_states
    q = q_values(train(cycle_config(CYCLE_TERMINATED), seed=0), np.eye(n, dtype=np.float32))
    np.testing.assert_allclose(q, [[0, 0], [0, 0], [1, 1]], atol=0.02)


def assert_same_run(a: TrainResult, b: TrainResult) -> None:
    assert a.episode_returns == b.episode_returns
    assert a.curve == b.curve and a.final_eval == b.final_eval
    assert a.q_network_state.keys() == b.q_network_state.keys()
    assert all(torch.equal(a.q_network_state[k], b.q_network_state[k]) for k in a.q_network_state)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"double_dqn": True, "tau": 0.1, "target_update_interval": 4, "loss": "mse"},
        {"n_steps": 3, "dueling": True, "prioritized_replay": True},
    ],
)
def test_same_seed_gives_an_identical_run(tiny_config: DQNConfig, changes: dict[str, object]) -> None:
    config = tiny_config.replace(**changes)
    assert_same_run(train(config, seed=3), train(config, seed=3))


@pytest.mark.parametrize("changes", [{}, {"n_steps": 3, "dueling": True, "prioritized_replay": True}])
def test_different_seeds_give_different_runs(tiny_config: DQNConfig, changes: dict[str, object]) -> None:
    results = [train(tiny_config.replace(**changes), seed=seed) for seed in (0, 1)]
    assert results[0].episode_returns != results[1].episode_returns
    assert not torch.equal(
        results[0].q_network_state["hidden_weights.0"], results[1].q_network_state["hidden_weights.0"]
    )


def test_the_global_random_state_does_not_change_a_run(tiny_config: DQNConfig) -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    first = train(tiny_config, seed=5)
    torch.manual_seed(456)
    np.random.seed(456)
    assert_same_run(first, train(tiny_config, seed=5))


def test_a_diverging_run_raises_with_the_step(tiny_config: DQNConfig) -> None:
    config = tiny_config.replace(learning_rate=1e12, max_grad_norm=None, loss="mse", eval_freq=0)
    with pytest.raises(DivergenceError, match=r"^training diverged at step \d+: loss is (nan|inf)") as info:
        train(config, seed=0)
    assert config.learning_starts < info.value.step <= config.total_timesteps
    assert not np.isfinite(info.value.loss)
    assert str(info.value).endswith("; lower --learning-rate or enable gradient clipping (--max-grad-norm)")
    marked = train_seeds(config, [0])[0].diverged  # train raises the one-member group's marked result
    assert marked is not None and (marked.step, str(marked)) == (info.value.step, str(info.value))


def test_a_nan_reward_from_the_env_is_named_as_the_cause_not_the_learning_rate(tiny_config: DQNConfig) -> None:
    config = tiny_config.replace(env_id=NAN_REWARD, eval_freq=0)
    cause = (
        "; the env returned a NaN or infinite reward or observation, which the batch replayed: fix the env (a "
        "lower --learning-rate cannot help)"
    )
    with pytest.raises(DivergenceError) as info:
        train(config, seed=0)
    (member,) = train_seeds(config, [0])
    assert str(info.value) == f"training diverged at step {config.learning_starts + 2}: loss is nan{cause}"
    assert str(member.diverged) == str(info.value)


def test_on_eval_sees_each_evaluation_and_can_stop_the_run(tiny_config: DQNConfig) -> None:
    seen: list[tuple[int, float]] = []

    def on_eval(step: int, mean_return: float) -> bool:
        seen.append((step, mean_return))
        return step >= 400

    result = train(tiny_config, seed=0, on_eval=on_eval)
    assert [step for step, _ in seen] == [200, 400]
    assert result.stopped_early and result.steps == 400


@pytest.mark.parametrize("seed", [-1, 2**32, 10**30, 0.5, True])
def test_a_seed_outside_0_to_2_32_minus_1_is_a_config_error(tiny_config: DQNConfig, seed: Any) -> None:
    with pytest.raises(ConfigError, match=r"^seed = .* expected an integer from 0 to 4294967295 \(2\*\*32 - 1\)$"):
        train(tiny_config, seed=seed)
    with make_env("CartPole-v1") as env, pytest.raises(ConfigError, match=r"^seed = "):
        run_episodes(lambda obs: [0], [env], 1, seed=seed)


def test_the_largest_seed_trains(tiny_config: DQNConfig) -> None:
    assert train(tiny_config.replace(eval_freq=0), seed=2**32 - 1).seed == 2**32 - 1
