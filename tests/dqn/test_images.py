"""Image observations: detection, layout and scaling from the space, and one-line errors for the rest."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dqn_tune.dqn.images import ImageFormat, image_format, is_image
from dqn_tune.envs.catch import Catch
from dqn_tune.errors import EnvError


def format_of(space: gym.spaces.Box) -> ImageFormat:
    return image_format("test/Env-v0", space.shape, space.dtype, space.low, space.high)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((10, 10, 4), (4, 10, 10, False)),
        ((84, 84, 4), (4, 84, 84, False)),
        ((10, 10, 10), (10, 10, 10, False)),
        ((4, 84, 84), (4, 84, 84, True)),
        ((3, 10, 5), (3, 10, 5, True)),
        ((10, 5, 3), (3, 10, 5, False)),
        ((84, 84), (1, 84, 84, False)),
        ((1, 8, 8), (1, 8, 8, True)),
        ((8, 8, 1), (1, 8, 8, False)),
    ],
)
def test_layout_channels_last_unless_the_first_axis_is_smaller(shape: tuple[int, ...], expected: tuple) -> None:
    image = format_of(gym.spaces.Box(0, 255, shape, np.uint8))
    assert (image.channels, image.height, image.width, image.channels_first) == expected
    assert image.shape == expected[:3]


def test_only_2d_and_3d_shapes_are_images() -> None:
    assert [is_image(shape) for shape in [(4,), (8, 8), (8, 8, 3), (2, 8, 8, 3)]] == [False, True, True, False]


@pytest.mark.parametrize(
    "space, low, scale",
    [
        (gym.spaces.Box(0, 255, (10, 5, 3), np.uint8), 0.0, 1 / 255),
        (gym.spaces.Box(0, 1, (10, 10, 4), bool), 0.0, 1.0),
        (gym.spaces.Box(-1.0, 1.0, (3, 8, 8), np.float32), -1.0, 0.5),
        (gym.spaces.Box(0, 255.0, (8, 8), np.float64), 0.0, 1 / 255),
    ],
)
def test_uniform_bounds_scale_by_one_number(space: gym.spaces.Box, low: float, scale: float) -> None:
    image = format_of(space)
    assert image.low.shape == () and image.scale.shape == ()
    assert image.low == pytest.approx(low) and image.scale == pytest.approx(scale)
    assert image.low.dtype == image.scale.dtype == np.float32


def test_per_pixel_bounds_are_kept_in_channels_first_order() -> None:
    low = np.zeros((4, 5, 2), np.float32)
    high = np.ones((4, 5, 2), np.float32)
    high[..., 1] = 4.0  # channel 1 spans [0, 4]
    high[0, 0, 0] = 0.0  # a pixel that cannot change: scale 1, not inf
    image = format_of(gym.spaces.Box(low, high, dtype=np.float32))
    assert image.scale.shape == (2, 4, 5) and not image.channels_first
    assert np.all(image.scale[1] == 0.25)
    assert image.scale[0, 0, 0] == 1.0 and np.all(image.scale[0].flat[1:] == 1.0)


def test_catch_spaces_read_as_images() -> None:
    assert format_of(Catch().observation_space).shape == (3, 10, 5)
    assert format_of(Catch(channels_first=True, dtype="bool").observation_space).channels_first


@pytest.mark.parametrize(
    "space, message",
    [
        (
            gym.spaces.Box(-np.inf, np.inf, (10, 10, 3), np.float32),
            (
                r"^env 'test/Env-v0' has image observations of shape \(10, 10, 3\) float32 with unknown range "
                r"\(bounds \[-inf, inf\]\); a float image needs finite bounds, e.g. Box\(0, 1\) or Box\(0, 255\), "
                r"to be scaled to \[0, 1\]$"
            ),
        ),
        (
            gym.spaces.Box(0, 1, (64, 3, 100), np.uint8),
            (
                r"^env 'test/Env-v0' has observations of shape \(64, 3, 100\) uint8: 64 channels do not fit a "
                r"3 x 100 image; expected H x W x C or C x H x W with at most min\(H, W\) channels$"
            ),
        ),
        (
            gym.spaces.Box(0, 1, (2, 8, 8, 3), np.uint8),
            r"^env 'test/Env-v0' has observations of shape \(2, 8, 8, 3\) uint8; a CNN needs images: "
            r"H x W x C, C x H x W or H x W$",
        ),
    ],
)
def test_what_is_not_a_usable_image_is_a_one_line_error(space: gym.spaces.Box, message: str) -> None:
    with pytest.raises(EnvError, match=message):
        format_of(space)
