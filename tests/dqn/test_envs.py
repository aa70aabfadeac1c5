"""make_env: any gymnasium env with Discrete actions, whatever its constructor takes; clear errors otherwise."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dqn_tune.dqn.envs import make_env
from dqn_tune.errors import EnvError


class NoRenderModeEnv(gym.Env[np.ndarray, int]):
    """A user's env whose constructor takes no render_mode (gymnasium does not require one)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(3, np.float32), 1.0, False, False, {}


gym.register("NoRenderMode-v0", entry_point=NoRenderModeEnv, max_episode_steps=10)


def test_an_env_whose_constructor_takes_no_render_mode_is_made() -> None:
    with make_env("NoRenderMode-v0") as env:
        assert env.action_space.n == 2


def test_rendering_such_an_env_is_a_one_line_env_error() -> None:
    with pytest.raises(
        EnvError,
        match=r"^env 'NoRenderMode-v0' could not be made: .*render_mode.*; it cannot render "
        r"'rgb_array' frames$",
    ):
        make_env("NoRenderMode-v0", render_mode="rgb_array")
