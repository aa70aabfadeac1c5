"""make_env: any gymnasium env with Discrete actions, whatever its constructor takes; clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

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


def needs_a_package(package: str) -> gym.Env:
    """An env whose constructor finds `package` missing, as gymnasium's own envs report it."""
    raise gym.error.DependencyNotInstalled(f"{package} is not installed, run `pip install {package.lower()}`")


gym.register("NeedsBox2D-v0", entry_point=lambda: needs_a_package("Box2D"))
gym.register("NeedsOpenCV-v0", entry_point=lambda: needs_a_package("OpenCV"))


@pytest.mark.parametrize(
    ("package", "hint"), [("Box2D", ". For Box2D envs: pip install 'dqn-tune[box2d]'"), ("OpenCV", ".")]
)
def test_a_missing_package_is_named_and_box2d_s_extra_offered_only_for_box2d(package: str, hint: str) -> None:
    with pytest.raises(EnvError) as error:
        make_env(f"Needs{package}-v0")
    assert str(error.value) == (
        f"env 'Needs{package}-v0' needs an extra package: {package} is not installed, "
        f"run `pip install {package.lower()}`{hint}"
    )


USER_MODULE = """
import gymnasium as gym
gym.register("UserGrid-v0", entry_point="dqn_tune.envs.catch:Catch", max_episode_steps=9)
"""


def test_an_id_module_env_is_made_once_its_module_is_on_the_path_and_its_absence_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_envs_for_dqn_tune.py").write_text(USER_MODULE)
    with pytest.raises(
        EnvError, match=r"on Python's import path that registers the id \(for a file here: PYTHONPATH=\.\)$"
    ):
        make_env("user_envs_for_dqn_tune:UserGrid-v0")
    monkeypatch.syspath_prepend(str(tmp_path))
    with make_env("user_envs_for_dqn_tune:UserGrid-v0") as env:
        assert env.observation_space.shape == (10, 5, 3)
