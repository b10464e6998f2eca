"""Upscale Image / Upscale Latent / Upscale Latent By against plain torch interpolation and OpenCV."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from app.engine.context import NodeError
from app.runtime.values import Latent
from nodes import resize

CTX = SimpleNamespace(node_id="test")


def _pictures(batch=2, height=24, width=32) -> np.ndarray:
    return np.random.default_rng(0).random((batch, height, width, 3), dtype=np.float32)


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic"])
def test_image_scale_is_torch_interpolate(method):
    image = _pictures()
    out = resize.scale_image(CTX, image=image, method=method, width=48, height=40, fit="stretch")["image"]
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(image).movedim(-1, 1), size=(40, 48), mode=method
    )
    assert out.shape == (2, 40, 48, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected.clamp(0, 1).movedim(1, -1).numpy(), atol=1e-6)


def test_image_scale_lanczos_is_opencv_and_zero_keeps_aspect():
    image = _pictures(batch=1)
    out = resize.scale_image(CTX, image=image, method="lanczos", width=64, height=0, fit="stretch")["image"]
    assert out.shape == (1, 48, 64, 3)  # 32x24 -> 64 wide keeps 4:3
    expected = np.clip(cv2.resize(image[0], (64, 48), interpolation=cv2.INTER_LANCZOS4), 0, 1)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_image_scale_crop_takes_the_centre_and_pad_keeps_all():
    image = np.zeros((1, 10, 30, 3), np.float32)
    image[:, :, 10:20] = 1.0  # a white middle third
    cropped = resize.scale_image(CTX, image=image, method="nearest-exact", width=10, height=10, fit="crop")[
        "image"
    ]
    assert cropped.min() == 1.0  # only the middle square is left
    padded = resize.scale_image(CTX, image=image, method="nearest-exact", width=30, height=30, fit="pad")[
        "image"
    ]
    assert padded.shape == (1, 30, 30, 3)
    assert padded[0, :10].max() == 0.0 and padded[0, 20:].max() == 0.0  # black bars above and below
    np.testing.assert_array_equal(padded[0, 10:20], image[0])


def test_latent_upscale_to_a_pixel_size_and_by_a_factor():
    samples = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    latent = Latent(samples, "sd15", 8)
    out = resize.upscale_latent(CTX, latent=latent, method="bicubic", width=96, height=128, fit="stretch")[
        "latent"
    ]
    expected = torch.nn.functional.interpolate(samples, size=(16, 12), mode="bicubic")
    torch.testing.assert_close(out.samples, expected)
    assert (out.family, out.pixels_per_latent) == ("sd15", 8)
    by = resize.upscale_latent_by(CTX, latent=latent, method="nearest-exact", scale_by=1.5)["latent"]
    torch.testing.assert_close(
        by.samples, torch.nn.functional.interpolate(samples, size=(12, 12), mode="nearest-exact")
    )
    with pytest.raises(NodeError, match="smaller than one latent pixel"):
        resize.upscale_latent(CTX, latent=latent, method="bilinear", width=4, height=4, fit="stretch")


def test_a_noise_mask_rides_along_a_stretch_or_factor_upscale_and_not_a_crop():
    samples = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    latent = Latent(samples, "sd15", 8, mask=mask)
    stretched = resize.upscale_latent(
        CTX, latent=latent, method="bilinear", width=128, height=128, fit="stretch"
    )
    assert stretched["latent"].mask is mask  # the Sampler takes it to the new size (nearest)
    assert (
        resize.upscale_latent_by(CTX, latent=latent, method="bilinear", scale_by=2.0)["latent"].mask is mask
    )
    cropped = resize.upscale_latent(CTX, latent=latent, method="bilinear", width=128, height=64, fit="crop")
    assert cropped["latent"].mask is None  # it would no longer line up
