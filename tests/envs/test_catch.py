"""Catch: dqn-tune's tiny image game, through gymnasium's own checks and by its rules."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import dqn_tune.envs  # noqa: F401  (registers the dqn-tune/ ids)
from dqn_tune.envs.catch import LEFT, RIGHT, STAY, Catch


@pytest.mark.parametrize("env_id, shape", [("dqn-tune/Catch-v0", (10, 5, 3)), ("dqn-tune/CatchCHW-v0", (3, 10, 5))])
def test_registered_ids_pass_gymnasiums_env_checker(env_id: str, shape: tuple[int, ...]) -> None:
    env = gym.make(env_id)
    assert env.observation_space == gym.spaces.Box(0, 255, shape, np.uint8)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("dtype, lit", [("uint8", 255), ("bool", True), ("float32", 1.0)])
def test_the_ball_and_paddle_are_lit_pixels_of_their_own_channels(dtype: str, lit: object) -> None:
    env = Catch(dtype=dtype)
    obs, _ = env.reset(seed=3)
    assert obs.dtype == env.observation_space.dtype and env.observation_space.contains(obs)
    ball = np.argwhere(obs[..., 0])
    paddle = np.argwhere(obs[..., 1])
    assert len(ball) == 1 and ball[0][0] == 0 and obs[(*ball[0], 0)] == lit
    assert paddle.tolist() == [[9, 2]]
    assert not obs[..., 2].any()


def test_channels_first_is_the_transpose_of_channels_last() -> None:
    last, first = Catch(), Catch(channels_first=True)
    obs_last, _ = last.reset(seed=5)
    obs_first, _ = first.reset(seed=5)
    for action in (LEFT, LEFT, RIGHT, STAY):
        assert np.array_equal(obs_first, obs_last.transpose(2, 0, 1))
        obs_last, *_ = last.step(action)
        obs_first, *_ = first.step(action)


def play(env: Catch, *, follow: bool) -> float:
    """One episode moving the paddle towards the ball (follow) or away from it; its return."""
    obs, _ = env.reset()
    while True:
        ball, paddle = np.argwhere(obs[..., 0])[0][1], np.argwhere(obs[..., 1])[0][1]
        towards = STAY if ball == paddle else (RIGHT if ball > paddle else LEFT)
        action = towards if follow else (LEFT if ball >= paddle else RIGHT)
        obs, reward, terminated, truncated, _ = env.step(action)
        assert not truncated
        if terminated:
            return reward
        assert reward == 0.0


def test_following_the_ball_always_catches_it_and_running_away_misses() -> None:
    env = Catch()
    env.reset(seed=0)
    assert [play(env, follow=True) for _ in range(20)] == [1.0] * 20
    assert [play(env, follow=False) for _ in range(20)] == [-1.0] * 20


def test_episodes_last_rows_minus_one_steps_and_seeds_repeat() -> None:
    env = Catch(rows=6, columns=4)
    starts = []
    for seed in (1, 1, 2):
        obs, _ = env.reset(seed=seed)
        starts.append(int(np.argwhere(obs[..., 0])[0][1]))
        steps = 0
        terminated = False
        while not terminated:
            _, _, terminated, _, _ = env.step(STAY)
            steps += 1
        assert steps == 5
    assert starts[0] == starts[1]
    columns = {int(np.argwhere(env.reset()[0][..., 0])[0][1]) for _ in range(50)}
    assert columns == set(range(4))


def test_rgb_array_render_is_an_upscaled_uint8_frame() -> None:
    env = gym.make("dqn-tune/Catch-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (240, 120, 3)
    assert np.array_equal(frame[::24, ::24], obs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rows": 1}, "at least 2 rows"),
        ({"dtype": "int16"}, "dtype 'int16'"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Catch(**kwargs)


def test_an_action_outside_the_space_is_refused() -> None:
    env = Catch()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 3"):
        env.step(3)
