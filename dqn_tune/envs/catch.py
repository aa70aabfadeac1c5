"""Catch: a tiny grid game drawn as an image, for fast tests of image observations (bsuite's catch, as pixels).

A ball starts in a random column of the top row and falls one row per step; the agent moves a paddle
along the bottom row (left, stay, right). When the ball reaches the bottom row the episode ends with
reward +1 if the paddle is under it, else -1. Every episode lasts `rows - 1` steps; the best policy
scores +1, a random one mostly misses.

The observation is the grid as an RGB image, one pixel per cell: the ball red, the paddle green,
uint8 in [0, 255] (or bool or float32 in [0, 1]), H x W x C or, with `channels_first`, C x H x W.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

LEFT, STAY, RIGHT = 0, 1, 2
BALL_CHANNEL, PADDLE_CHANNEL = 0, 1
CHANNELS = 3
RENDER_CELL = 24
"""Pixels per grid cell in rgb_array renders (a GIF of a 10 x 5 grid is 240 x 120)."""
DTYPES = {"uint8": (np.uint8, 255), "bool": (np.bool_, 1), "float32": (np.float32, 1.0)}
"""Observation dtype name -> (numpy dtype, value of a lit pixel)."""


class Catch(gym.Env[np.ndarray, np.int64]):
    """Catch the falling ball; see the module docstring."""

    # gymnasium.Env declares metadata as an instance attribute; every env overrides it this way
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 8}  # noqa: RUF012

    def __init__(
        self,
        rows: int = 10,
        columns: int = 5,
        *,
        channels_first: bool = False,
        dtype: str = "uint8",
        render_mode: str | None = None,
    ) -> None:
        if rows < 2 or columns < 1:
            raise ValueError(f"a Catch grid needs at least 2 rows and 1 column, got {rows} x {columns}")
        if dtype not in DTYPES:
            raise ValueError(f"Catch dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"Catch render_mode {render_mode!r} is not one of None, 'rgb_array'")
        self.rows, self.columns, self.channels_first = rows, columns, channels_first
        self.render_mode = render_mode
        numpy_dtype, self._lit = DTYPES[dtype]
        shape = (CHANNELS, rows, columns) if channels_first else (rows, columns, CHANNELS)
        self.observation_space = gym.spaces.Box(0, self._lit, shape, numpy_dtype)
        self.action_space = gym.spaces.Discrete(3)
        self._ball_row = self._ball_column = self._paddle = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """A new ball in a random column of the top row; the paddle in the middle."""
        super().reset(seed=seed)
        self._ball_row, self._ball_column = 0, int(self.np_random.integers(self.columns))
        self._paddle = self.columns // 2
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Move the paddle, let the ball fall one row; +1 or -1 when it reaches the bottom."""
        if not self.action_space.contains(action):
            raise ValueError(f"Catch action {action!r} is not one of 0 (left), 1 (stay), 2 (right)")
        self._paddle = min(max(self._paddle + int(action) - STAY, 0), self.columns - 1)
        self._ball_row += 1
        terminated = self._ball_row == self.rows - 1
        reward = (1.0 if self._paddle == self._ball_column else -1.0) if terminated else 0.0
        return self._observation(), reward, terminated, False, {}

    def _grid(self) -> np.ndarray:
        """The grid as an RGB image, H x W x 3, lit pixels 1."""
        grid = np.zeros((self.rows, self.columns, CHANNELS), dtype=np.uint8)
        grid[self._ball_row, self._ball_column, BALL_CHANNEL] = 1
        grid[self.rows - 1, self._paddle, PADDLE_CHANNEL] = 1
        return grid

    def _observation(self) -> np.ndarray:
        grid = self._grid()
        if self.channels_first:
            grid = grid.transpose(2, 0, 1)
        return np.ascontiguousarray(grid * self._lit, dtype=self.observation_space.dtype)

    def render(self) -> np.ndarray | None:
        """The grid as a uint8 RGB frame, each cell RENDER_CELL pixels square (None without a render_mode)."""
        if self.render_mode is None:
            return None
        frame = self._grid() * np.uint8(255)
        rendered: np.ndarray = frame.repeat(RENDER_CELL, axis=0).repeat(RENDER_CELL, axis=1)
        return rendered
