"""ObservationSpec: the shape, stored dtype and range of an env's observations, taken from its space.

Observations travel through the replay buffer in their own shape and dtype (float32 for classic control;
uint8 or bool images stay one byte per value) and become network input in one place,
`networks.base.network_input`. This module imports no torch (the CLI's start reads env spaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import gymnasium as gym


@dataclass(frozen=True, eq=False)
class ObservationSpec:
    """What a Box observation space holds; `dtype` is how the replay buffer stores it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    """float32 for any floating space (the network's precision); integer and bool spaces keep their own."""
    low: np.ndarray
    high: np.ndarray
    """The space's bounds (shape `shape`): what scaling an image observation to [0, 1] would use."""

    @classmethod
    def of(cls, space: gym.spaces.Box) -> ObservationSpec:
        """The spec of a Box space."""
        dtype = np.dtype(np.float32) if np.issubdtype(space.dtype, np.floating) else np.dtype(space.dtype)
        return cls(tuple(int(n) for n in space.shape), dtype, np.asarray(space.low), np.asarray(space.high))

    @property
    def size(self) -> int:
        """Values per observation."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes of one stored observation."""
        return self.size * self.dtype.itemsize

    def same_layout(self, other: ObservationSpec) -> bool:
        """Whether `other` has this shape and stored dtype (what a trained network depends on)."""
        return (self.shape, self.dtype) == (other.shape, other.dtype)

    def describe(self) -> str:
        """E.g. "shape (4,) float32"."""
        return f"shape {self.shape} {self.dtype.name}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data and tensors, as the agent file stores it (readable with weights_only)."""
        import torch  # only agent files need it

        return {
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "low": torch.from_numpy(np.array(self.low)),
            "high": torch.from_numpy(np.array(self.high)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObservationSpec:
        """Inverse of `to_dict`; KeyError, TypeError or ValueError for malformed data."""
        shape = tuple(data["shape"])
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
            raise ValueError(f"bad shape {shape!r}")
        low, high = (data[key].numpy() for key in ("low", "high"))
        if low.shape != shape or high.shape != shape:
            raise ValueError("bounds of another shape")
        return cls(shape, np.dtype(data["dtype"]), low, high)

    @classmethod
    def flat(cls, size: int) -> ObservationSpec:
        """Unbounded float32 vectors of `size` values (what agent files of format version 1 were trained on)."""
        return cls((size,), np.dtype(np.float32), np.full(size, -np.inf, np.float32), np.full(size, np.inf, np.float32))
