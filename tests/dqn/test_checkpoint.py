"""Checkpoints of a group run: a run resumed from any checkpoint ends bit-identical to the run never stopped."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from dqn_tune import DQNConfig, train_seeds
from dqn_tune.dqn.checkpoint import Checkpoint, Checkpointing, read_checkpoint
from dqn_tune.dqn.env_state import env_state, restorable, set_env_state
from dqn_tune.dqn.envs import make_env
from dqn_tune.dqn.trainer import TrainResult
from dqn_tune.errors import CheckpointError
from tests.dqn.test_batched import assert_same_member


def saved_every(
    config: DQNConfig, seeds: list[int], every: int, directory: Path, resume: Checkpoint | None = None
) -> tuple[list[TrainResult], dict[int, Path]]:
    """Train with a checkpoint every `every` steps, each kept as a copy; (results, checkpoint path by step)."""
    kept: dict[int, Path] = {}

    def save(path: Path, step: int) -> None:
        kept[step] = Path(shutil.copy(path, directory / f"step_{step}.pt"))

    return train_seeds(config, seeds, checkpoints=Checkpointing(every, save, resume)), kept


def resumed(config: DQNConfig, seeds: list[int], path: Path) -> list[TrainResult]:
    checkpoint = read_checkpoint(path, config=config.to_dict(), seeds=seeds)
    return train_seeds(config, seeds, checkpoints=Checkpointing(0, lambda _path, _step: None, checkpoint))


def assert_same_run(a: list[TrainResult], b: list[TrainResult]) -> None:
    for x, y in zip(a, b, strict=True):
        assert_same_member(x, y)
        assert (x.steps, x.updates, x.target_updates) == (y.steps, y.updates, y.target_updates)


@pytest.mark.parametrize(
    ("options", "seeds"),
    [
        ({}, [0]),
        ({}, [0, 1]),
        ({"n_steps": 3, "dueling": True, "prioritized_replay": True, "tau": 0.5}, [2]),
        ({"n_steps": 3, "dueling": True, "prioritized_replay": True, "keep_best": True}, [2, 3]),
        ({"optimizer": "rmsprop"}, [0, 1]),
    ],
    ids=["plain-K1", "plain-K2", "all-options-K1", "all-options-K2", "rmsprop-K2"],
)
def test_a_run_resumed_from_any_checkpoint_ends_bit_identical(
    tiny_config: DQNConfig, tmp_path: Path, options: dict[str, object], seeds: list[int]
) -> None:
    # checkpoints at steps that are not evaluation, target or update boundaries, before and after learning
    # starts, mid-episode and with the buffer wrapped around
    config = tiny_config.replace(total_timesteps=1_000, buffer_size=500, train_freq=2, **options)
    unstopped, checkpoints = saved_every(config, seeds, 170, tmp_path)
    assert sorted(checkpoints) == [170, 340, 510, 680, 850]
    for step in (170, 850):
        assert_same_run(resumed(config, seeds, checkpoints[step]), unstopped)


def test_a_resumed_run_writes_the_same_checkpoints(tiny_config: DQNConfig, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, checkpoints = saved_every(tiny_config, [0], 150, tmp_path / "a")
    checkpoint = read_checkpoint(checkpoints[150], config=tiny_config.to_dict(), seeds=[0])
    second, again = saved_every(tiny_config, [0], 150, tmp_path / "b", resume=checkpoint)
    assert sorted(again) == [300, 450]
    assert_same_run(first, second)
    assert_same_run(train_seeds(tiny_config, [0]), first)  # saving checkpoints does not change the run
    for step in (300, 450):  # everything but the wall time the checkpoint records
        a, b = (
            read_checkpoint(path, config=tiny_config.to_dict(), seeds=[0]).payload
            for path in (checkpoints[step], again[step])
        )
        assert a.pop("train_seconds") != b.pop("train_seconds") and same_data(a, b)
    assert checkpoint.step == 150 and checkpoint.restarted == [] and second[0].wall_time_s > checkpoint.train_seconds


def same_data(a: object, b: object) -> bool:
    """Equal nested plain data; tensors and arrays of equal dtype, shape and elements."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_data(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_data, a, b))
    return a == b


def assert_restored_exactly(env: gym.Env, copy: gym.Env, before: list[int], after: list[int]) -> dict:
    """Take the actions `before` in `env`, restore its captured state into `copy` (reset with another seed), then take
    the actions `after` in both, resetting at episode ends: every step and reset alike. The state captured."""
    env.reset(seed=1)
    copy.reset(seed=2)
    for action in before:
        env.step(action)
    state = env_state(env)
    assert restorable(state)
    set_env_state(copy, state)
    for action in after:
        a, b = env.step(action), copy.step(action)
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
        if a[2] or a[3]:
            assert np.array_equal(env.reset()[0], copy.reset()[0])
    return state


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"])
def test_classic_control_envs_are_restored_exactly(env_id: str) -> None:
    with make_env(env_id) as env, make_env(env_id) as copy:
        # past the end of an episode: TimeLimit's count and the Generator came along
        assert_restored_exactly(env, copy, [0] * 7, [1] * 300)


class Game:
    """Game state in a plain object with a legacy RandomState, as MinAtar's games keep theirs."""

    def __init__(self) -> None:
        self.random = np.random.RandomState(0)
        self.position = 0
        self.board = np.zeros(4)


class GameEnv(gym.Env[np.ndarray, int]):
    """An env whose state is all in `self.env`, a Game (MinAtar's Environment names its game `env` too)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (5,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.env = Game()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.env.random.seed(self.np_random.integers(2**31))
        self.env.position, self.env.board = 0, self.env.random.random(4)
        return self.observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.env.position += action + self.env.random.randint(3)
        self.env.board[self.env.position % 4] += self.env.random.random()
        return self.observe(), float(self.env.position), self.env.position > 40, False, {}

    def observe(self) -> np.ndarray:
        return np.append(self.env.board, self.env.position).astype(np.float32)


def test_an_env_holding_a_plain_object_with_a_random_state_is_restored_exactly() -> None:
    env, copy = GameEnv(), GameEnv()
    # through several episodes: the Generator and the RandomState came along
    state = assert_restored_exactly(env, copy, [1] * 5, [0] * 100)
    env.step(1)
    assert env.env.board is not state["layers"][0]["env"]["board"]  # the env never shares an array with a state


class SelfSeededGameEnv(GameEnv):
    """Seeds its game itself and never reads the Generator `gym.Env` makes on first use, as MinAtar's envs do."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self.env.random.seed(seed)
        self.env.position, self.env.board = 0, self.env.random.random(4)
        return self.observe(), {}


def test_a_state_captured_after_the_generator_was_read_restores_an_env_where_it_was_not() -> None:
    env, copy = SelfSeededGameEnv(), SelfSeededGameEnv()
    env.reset(seed=1)
    first = env_state(env)  # reads `np_random`, which gym.Env then makes: a second capture sees it
    assert_restored_exactly(env, copy, [1] * 5, [0] * 100)
    fresh = SelfSeededGameEnv()
    set_env_state(fresh, first)  # and the other way round
    assert same_data(env_state(fresh)["layers"], first["layers"])


def test_a_state_holding_the_lazily_made_generator_as_an_attribute_still_restores() -> None:
    # as states captured before it was left out were: checkpoints of runs still going hold it
    env, copy = SelfSeededGameEnv(), SelfSeededGameEnv()
    env.reset(seed=1)
    state = env_state(env)
    state["layers"][0]["_np_random"] = state["rng"]
    state["layers"][0]["_np_random_seed"] = 1
    copy.reset(seed=2)
    set_env_state(copy, state)
    assert np.array_equal(env.step(1)[0], copy.step(1)[0])
    assert copy.np_random.bit_generator.state == env.np_random.bit_generator.state


@pytest.mark.parametrize(
    "held",
    [
        lambda env: env,  # an object that refers back to its owner
        lambda env: [Game()],  # restoring would put a dict where the list held an object
        lambda env: {"rng": np.random.default_rng(0)},  # ... or where the dict held a Generator
    ],
)
def test_an_env_state_that_cannot_be_put_back_is_not_captured(held: Callable[[GameEnv], object]) -> None:
    env = GameEnv()
    env.reset(seed=1)
    env.env.held = held(env)  # type: ignore[attr-defined]
    assert not restorable(env_state(env))


@pytest.mark.parametrize("game", ["Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders"])
def test_minatar_envs_are_restored_exactly(game: str) -> None:
    pytest.importorskip("minatar")
    with make_env(f"MinAtar/{game}-v1") as env, make_env(f"MinAtar/{game}-v1") as copy:
        # sticky actions, spawns and ball directions draw from the games' RandomStates
        assert_restored_exactly(env, copy, [step % 3 for step in range(20)], [step % 3 for step in range(500)])


def test_a_box2d_env_keeps_only_its_generator() -> None:
    pytest.importorskip("Box2D")
    with make_env("LunarLander-v3") as env, make_env("LunarLander-v3") as copy:
        env.reset(seed=1)
        copy.reset(seed=2)
        state = env_state(env)
        assert not restorable(state)
        set_env_state(copy, state)
        assert np.array_equal(env.reset()[0], copy.reset()[0])  # the next episode starts alike


def test_a_lunar_lander_run_resumes_with_its_episode_restarted(tiny_config: DQNConfig, tmp_path: Path) -> None:
    pytest.importorskip("Box2D")
    config = tiny_config.replace(
        env_id="LunarLander-v3", total_timesteps=400, learning_starts=50, n_steps=3, eval_curve_episodes=1
    )
    unstopped, checkpoints = saved_every(config, [0], 150, tmp_path)
    checkpoint = read_checkpoint(checkpoints[150], config=config.to_dict(), seeds=[0])
    assert checkpoint.restarted == [0]
    (result,) = resumed(config, [0], checkpoints[150])
    assert result.steps == unstopped[0].steps and result.curve[0].step == 200


def test_damaged_truncated_and_foreign_checkpoints_are_refused(tiny_config: DQNConfig, tmp_path: Path) -> None:
    _, checkpoints = saved_every(tiny_config, [0], 300, tmp_path)
    good = checkpoints[300]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "dqn-tune-checkpoint", "object": zipfile.ZipInfo()}, pickled)
    for path, message in (
        (truncated, "not a torch zip archive"),
        (garbage, "not a torch zip archive"),
        (pickled, "objects other than tensors and plain data"),
    ):
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(path, config=tiny_config.to_dict(), seeds=[0])
    with pytest.raises(CheckpointError, match="another run"):
        read_checkpoint(good, config=tiny_config.to_dict(), seeds=[1])
    with pytest.raises(CheckpointError, match="another run"):
        read_checkpoint(good, config=tiny_config.replace(learning_rate=0.01).to_dict(), seeds=[0])


def test_a_checkpoint_written_before_a_field_existed_resumes_while_the_field_is_at_its_default(
    tiny_config: DQNConfig, tmp_path: Path
) -> None:
    unstopped, checkpoints = saved_every(tiny_config, [0], 300, tmp_path)
    older = tmp_path / "older.pt"
    payload = torch.load(checkpoints[300], weights_only=True)
    del payload["config"]["dueling"]  # as a dqn-tune from before dueling heads wrote it
    torch.save(payload, older)
    assert_same_run(resumed(tiny_config, [0], older), unstopped)
    with pytest.raises(CheckpointError, match="another run"):
        read_checkpoint(older, config=tiny_config.replace(dueling=True).to_dict(), seeds=[0])


def test_a_checkpoint_that_does_not_fit_the_run_is_refused_before_training(
    tiny_config: DQNConfig, tmp_path: Path
) -> None:
    _, checkpoints = saved_every(tiny_config, [0], 300, tmp_path)
    checkpoint = read_checkpoint(checkpoints[300], config=tiny_config.to_dict(), seeds=[0])
    checkpoint.payload["replay"]["obs"] = checkpoint.payload["replay"]["obs"][:, :3]
    with pytest.raises(CheckpointError, match="replay obs"):
        train_seeds(tiny_config, [0], checkpoints=Checkpointing(0, lambda _path, _step: None, checkpoint))
