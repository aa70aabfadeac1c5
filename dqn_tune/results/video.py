"""Record one greedy episode of an agent as a GIF or MP4."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import imageio.v2 as imageio
import numpy as np

from dqn_tune.dqn.agent import Agent
from dqn_tune.dqn.envs import make_env
from dqn_tune.errors import EnvError, OutputPathError

if TYPE_CHECKING:
    import gymnasium as gym
    from numpy.typing import ArrayLike
from dqn_tune.output_paths import check_writable, replacing

VIDEO_SUFFIXES = (".gif", ".mp4")
FPS = 30
"""Frames per second of a video of an env that declares no `render_fps` (MinAtar's)."""
MIN_SIDE = 160
"""Frames smaller than this many pixels on a side are enlarged (whole pixels, nearest neighbour): MinAtar
renders its 10 x 10 grids as 10 x 10 frames."""


RENDER_WARNINGS = r".*(No render fps was declared|RGB-array rendering should return a numpy array with dtype uint8)"
"""What gymnasium's env checker says of frames `viewable` makes recordable (MinAtar's float64 frames) and of envs
without a frame rate (the video has FPS): noise on the terminal of someone who asked for a video."""


def record_episode(agent: Agent, path: str | os.PathLike[str], *, seed: int) -> tuple[Path, float]:
    """Play one greedy episode with rgb_array rendering and write it to `path`; return (path, return)."""
    target = Path(path)
    if target.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputPathError(f"video path {str(target)!r} has suffix {target.suffix!r}; expected .gif or .mp4")
    check_writable(target)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # render off-screen, without a display
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    env = make_env(agent.env_id, render_mode="rgb_array")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=RENDER_WARNINGS, category=UserWarning)
            agent.check_env(env)
            obs, _ = env.reset(seed=seed)
            frames: list[ArrayLike] = [_frame(env, agent.env_id)]  # ArrayLike: what imageio's stubs take
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
                frames.append(_frame(env, agent.env_id))
                total += float(reward)
                done = terminated or truncated
        fps = _frame_rate(env)
    finally:
        env.close()
    with replacing(target) as temporary:
        if target.suffix.lower() == ".gif":
            imageio.mimsave(temporary, frames, duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(temporary, frames, fps=fps, macro_block_size=1)
    return target, total


def _frame_rate(env: gym.Env) -> float:
    """The frames per second `env` declares in its metadata (`render_fps`), as gymnasium's RecordVideo plays them;
    FPS where it declares none or no positive number."""
    declared = env.metadata.get("render_fps")
    return float(declared) if isinstance(declared, (int, float)) and declared > 0 else FPS


def _frame(env: gym.Env, env_id: str) -> np.ndarray:
    """The env's current state rendered as an RGB array (render_mode="rgb_array"), as `viewable` makes it."""
    frame = env.render()
    if not isinstance(frame, np.ndarray):
        raise EnvError(
            f"env {env_id!r} rendered a {type(frame).__name__} with render_mode='rgb_array'; "
            "expected an RGB array to record"
        )
    try:
        return viewable(frame)
    except ValueError as exc:
        raise EnvError(f"env {env_id!r} rendered {exc}") from None


def viewable(frame: np.ndarray) -> np.ndarray:
    """A rendered frame as uint8 pixels a GIF or MP4 can hold, at least MIN_SIDE pixels on its shorter side.

    Gymnasium asks for uint8 RGB, and some envs render otherwise: floats are read as matplotlib's `imshow`
    reads them (0 to 1; MinAtar renders float64 colours), bools as black and white, integers as 0-255, a
    single channel as grey, and an alpha channel is dropped. ValueError for any other shape or dtype."""
    shape_ok = frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))
    if not shape_ok or 0 in frame.shape or frame.dtype.kind not in "biuf":
        raise ValueError(
            f"a {frame.dtype} array of shape {frame.shape}; expected H x W or H x W x 1, 3 or 4 numbers to record"
        )
    if frame.ndim == 3 and frame.shape[2] != 3:
        frame = frame[:, :, 0] if frame.shape[2] == 1 else frame[:, :, :3]
    if frame.dtype.kind == "f":
        frame = np.rint(np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255)
    elif frame.dtype.kind == "b":
        frame = frame * 255
    pixels: np.ndarray = np.clip(frame, 0, 255).astype(np.uint8)
    scale = -(-MIN_SIDE // min(pixels.shape[:2]))  # ceiling division: whole pixels per cell
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    return pixels
