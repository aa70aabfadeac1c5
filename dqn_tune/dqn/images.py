"""Image observations: which Box observations are images, their layout, and how they are scaled to [0, 1].

An image is a 3-D Box, H x W x C (gymnasium's and MinAtar's layout) or C x H x W (PyTorch's, and
frame stacks), or a 2-D Box H x W of one channel (a grayscale frame). The channel axis is the last
one unless the first is smaller (so 10 x 10 x 10 is H x W x C), and there are no more channels than
rows or columns. Values are scaled by the space's bounds: uint8 frames in [0, 255] and bool grids
in [0, 1] become [0, 1]; a float image needs finite bounds. This module imports no torch (the CLI's
start reads env spaces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dqn_tune.errors import EnvError


@dataclass(frozen=True, slots=True)
class ImageFormat:
    """How to read one image observation as network input."""

    channels: int
    height: int
    width: int
    channels_first: bool
    """True for C x H x W observations, False for H x W x C (and for H x W, one channel)."""
    low: np.ndarray
    """Value each input pixel maps to 0, as a float32 array of shape (C, H, W), or of shape () when uniform."""
    scale: np.ndarray
    """1 / (high - low), shaped like `low` (1 where high == low: a pixel that cannot change)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W): the layout the network computes in."""
        return self.channels, self.height, self.width


def is_image(shape: tuple[int, ...]) -> bool:
    """Whether observations of this shape are images (2-D or 3-D), not flat vectors."""
    return len(shape) in (2, 3)


def image_format(
    env_id: str, shape: tuple[int, ...], dtype: np.dtype, low: np.ndarray, high: np.ndarray
) -> ImageFormat:
    """The format of a Box space's images; EnvError naming the shape or bounds when it holds none.

    `dtype` is the space's own (a float image's bounds must be finite; integer and bool ones always are).
    """
    described = f"shape {tuple(shape)} {np.dtype(dtype).name}"
    if not is_image(shape):
        raise EnvError(
            f"env {env_id!r} has observations of {described}; a CNN needs images: H x W x C, C x H x W or H x W"
        )
    channels_first = len(shape) == 3 and shape[0] < shape[2]
    if len(shape) == 2:
        (height, width), channels = shape, 1
    elif channels_first:
        channels, height, width = shape
    else:
        height, width, channels = shape
    if channels > min(height, width):
        raise EnvError(
            f"env {env_id!r} has observations of {described}: {channels} channels do not fit a "
            f"{height} x {width} image; expected H x W x C or C x H x W with at most "
            f"min(H, W) channels"
        )
    low, high = (_channels_first(np.asarray(bound, dtype=np.float64), shape, channels_first) for bound in (low, high))
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise EnvError(
            f"env {env_id!r} has image observations of {described} with unknown range (bounds "
            f"[{low.min()}, {high.max()}]); a float image needs finite bounds, e.g. Box(0, 1) or "
            "Box(0, 255), to be scaled to [0, 1]"
        )
    span = high - low
    scale = np.where(span > 0, 1 / np.where(span > 0, span, 1), 1)
    if (low == low.flat[0]).all() and (scale == scale.flat[0]).all():  # one number each: a cheaper broadcast
        low, scale = low.flat[0], scale.flat[0]
    return ImageFormat(
        channels, height, width, channels_first, np.asarray(low, np.float32), np.asarray(scale, np.float32)
    )


def _channels_first(values: np.ndarray, shape: tuple[int, ...], channels_first: bool) -> np.ndarray:
    """Per-pixel bounds (broadcast to `shape`) in C x H x W order."""
    values = np.broadcast_to(values, shape)
    if len(shape) == 2:
        return values[None]
    return values if channels_first else values.transpose(2, 0, 1)
