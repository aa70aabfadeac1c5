"""Rendered frames as a GIF or MP4 holds them: uint8, RGB or grey, large enough to see."""

from __future__ import annotations

import numpy as np
import pytest

from dqn_tune.results.video import MIN_SIDE, viewable


def test_float_frames_are_read_from_0_to_1_and_small_ones_enlarged_by_whole_pixels() -> None:
    frame = np.random.default_rng(0).random((10, 8, 3))
    frame[0, 0] = (-0.5, 1.5, np.nan)  # out of range: clipped, as matplotlib's imshow does
    pixels = viewable(frame)
    scale = -(-MIN_SIDE // 8)  # 20 pixels per cell
    assert pixels.dtype == np.uint8 and pixels.shape == (10 * scale, 8 * scale, 3)
    assert np.array_equal(pixels[::scale, ::scale][1:], np.rint(frame[1:] * 255).astype(np.uint8))
    assert (pixels[:scale, :scale] == (0, 255, 0)).all()  # one cell is one block of pixels


@pytest.mark.parametrize(
    ("frame", "first_pixel"),
    [
        (np.eye(4, dtype=bool), 255),  # bools black and white, grey
        (np.full((4, 4, 1), 7, dtype=np.int64), 7),  # one channel: grey; integers as 0-255
        (np.full((4, 4, 4), 300, dtype=np.int32), (255, 255, 255)),  # alpha dropped, clipped to 255
    ],
)
def test_bool_grey_and_rgba_frames_become_uint8_grey_or_rgb(frame: np.ndarray, first_pixel: object) -> None:
    pixels = viewable(frame)
    assert pixels.dtype == np.uint8 and pixels.shape[:2] == (MIN_SIDE, MIN_SIDE) and pixels.ndim in (2, 3)
    assert pixels.ndim == 2 or pixels.shape[2] == 3
    assert np.array_equal(pixels[0, 0], first_pixel)


def test_a_large_uint8_frame_is_kept_as_it_is() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    assert np.array_equal(viewable(frame), frame)


@pytest.mark.parametrize(
    "frame",
    [np.zeros((4, 4, 2)), np.zeros(16), np.zeros((0, 4, 3)), np.array([["a"]]), np.zeros((2, 2, 4), dtype=complex)],
)
def test_frames_no_video_can_hold_are_refused_naming_their_shape_and_dtype(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match=rf"{frame.dtype} array of shape \({frame.shape[0]},"):
        viewable(frame)
