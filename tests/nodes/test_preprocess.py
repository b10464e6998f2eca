"""opencv preprocessors: checked against direct opencv calls and against geometry we drew ourselves."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from app import images
from app.engine.context import NodeError
from nodes import preprocess
from nodes.shapes import COLOURS, draw

CTX = SimpleNamespace(node_id="test")


def _square(width=64, height=64) -> np.ndarray:
    pixels = draw("square", COLOURS["white"], COLOURS["black"], 0.5, 0.5, 0.25, width, height)
    return images.from_uint8(pixels)[None]


def test_canny_matches_opencv_and_finds_the_square_outline():
    image = _square()
    out = preprocess.canny(CTX, image=image, latent=None, low=100, high=200, width=0, height=0, fit="crop")[
        "image"
    ]
    expected = cv2.Canny(cv2.cvtColor(images.to_uint8(image[0]), cv2.COLOR_RGB2GRAY), 100, 200)
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(images.to_uint8(out[0, ..., 0]), expected)
    ys, xs = np.nonzero(out[0, ..., 0])
    assert 14 <= xs.min() <= 17 and 46 <= xs.max() <= 49 and 14 <= ys.min() <= 17  # the square spans 16..48
    with pytest.raises(NodeError, match="above the high threshold"):
        preprocess.canny(CTX, image=image, latent=None, low=300, high=200, width=0, height=0, fit="crop")


def test_size_follows_a_connected_latent_or_the_params():
    latent = SimpleNamespace(samples=np.zeros((1, 4, 12, 16), np.float32))
    out = preprocess.blur(
        CTX, image=_square(), latent=latent, sigma=0.0, downscale=1, width=0, height=0, fit="crop"
    )
    assert out["image"].shape == (1, 96, 128, 3)
    wide = preprocess.blur(
        CTX, image=_square(), latent=None, sigma=0.0, downscale=1, width=128, height=64, fit="pad"
    )
    frame = wide["image"][0]
    assert frame.shape == (64, 128, 3)
    assert frame[:, :32].max() == 0.0 and frame[:, 96:].max() == 0.0  # pad bars left and right, aspect kept
    cropped = images.fit(np.arange(20 * 10, dtype=np.float32).reshape(20, 10) / 200, 10, 10, "crop")
    assert cropped.shape == (10, 10) and cropped[0, 0] == pytest.approx(50 / 200)  # centre rows 5..14 kept


def test_threshold_makes_white_lines_on_black():
    sketch = np.ones((1, 32, 32, 3), np.float32)
    sketch[0, 10:12, :, :] = 0.0  # a dark horizontal stroke on white paper
    out = preprocess.threshold(
        CTX, image=sketch, latent=None, threshold=128, invert=True, width=0, height=0, fit="crop"
    )
    assert set(np.unique(out["image"])) == {0.0, 1.0}
    assert out["image"][0, 10:12].min() == 1.0 and out["image"][0, :10].max() == 0.0


def test_soft_edges_are_zero_on_flat_areas_and_peak_at_one():
    out = preprocess.soft_edge(
        CTX, image=_square(), latent=None, method="sobel", blur=1.0, width=0, height=0, fit="crop"
    )
    frame = out["image"][0, ..., 0]
    assert frame.max() == 1.0 and frame[30:34, 30:34].max() == 0.0 and frame[0:4, 0:4].max() == 0.0
    flat = np.full((1, 16, 16, 3), 0.5, np.float32)
    assert (
        preprocess.soft_edge(
            CTX, image=flat, latent=None, method="laplacian", blur=0.0, width=0, height=0, fit="crop"
        )["image"].max()
        == 0.0
    )


def test_palette_keeps_at_most_k_colours_and_is_deterministic():
    rng = np.random.default_rng(0)
    noisy = rng.random((1, 48, 48, 3)).astype(np.float32)
    run = lambda: preprocess.palette(
        CTX, image=noisy, latent=None, colours=4, cell=1, width=0, height=0, fit="crop"
    )["image"]
    first, second = run(), run()
    np.testing.assert_array_equal(first, second)
    assert len(np.unique(first.reshape(-1, 3), axis=0)) <= 4
    two_colour = _square()
    out = preprocess.palette(
        CTX, image=two_colour, latent=None, colours=8, cell=4, width=0, height=0, fit="crop"
    )["image"]
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 8


def test_inpaint_control_marks_transparent_pixels():
    image = np.full((1, 8, 8, 3), 0.5, np.float32)
    alpha = np.ones((1, 8, 8), np.float32)
    alpha[0, 2:4, 2:4] = 0.0
    out = preprocess.inpaint(CTX, image=image, mask=alpha, invert=False, grow=1)
    grown = cv2.dilate(
        (alpha[0] < 0.5).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    )
    np.testing.assert_array_equal(out["mask"][0], grown.astype(np.float32))
    assert out["mask"].sum() == 12  # the 2x2 hole grown by one pixel (round kernel: no corners)
    assert (out["image"][0][out["mask"][0] == 1] == -1.0).all() and out["image"][0, 7, 7, 0] == 0.5
