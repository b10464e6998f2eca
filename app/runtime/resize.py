"""Resizing image and latent batches (N, C, H, W tensors) the way ComfyUI's Upscale Image / Upscale Latent
do: torch's interpolation (nearest-exact, bilinear, area, bicubic) or OpenCV's Lanczos, after cropping the
source to the target's aspect (`crop`), into a padded canvas (`pad`), or ignoring aspect (`stretch`).
"""

from __future__ import annotations

from typing import Any

METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
LATENT_METHODS = METHODS[:4]  # Lanczos rings: for pictures (clipped to 0..1), not latents
FITS = ("stretch", "crop", "pad")


def target_size(width: int, height: int, old_w: int, old_h: int) -> tuple[int, int]:
    """(width, height) where 0 keeps the source's aspect from the other side (both 0: the source's size)."""
    if width == 0 and height == 0:
        return old_w, old_h
    if width == 0:
        return max(1, round(old_w * height / old_h)), height
    if height == 0:
        return width, max(1, round(old_h * width / old_w))
    return width, height


def resize(samples: Any, width: int, height: int, method: str, fit: str = "stretch") -> Any:
    """`samples` (N, C, H, W float tensor) resized to height x width."""
    import torch

    _, channels, old_h, old_w = samples.shape
    if fit == "crop":  # cut the source to the target's aspect, centred, then resize
        if old_w * height > old_h * width:
            keep = max(1, round(old_h * width / height))
            left = (old_w - keep) // 2
            samples = samples[..., left : left + keep]
        elif old_w * height < old_h * width:
            keep = max(1, round(old_w * height / width))
            top = (old_h - keep) // 2
            samples = samples[..., top : top + keep, :]
    if fit == "pad":
        scale = min(width / old_w, height / old_h)
        inner_w, inner_h = max(1, round(old_w * scale)), max(1, round(old_h * scale))
        canvas = torch.zeros((samples.shape[0], channels, height, width), dtype=samples.dtype)
        top, left = (height - inner_h) // 2, (width - inner_w) // 2
        canvas[..., top : top + inner_h, left : left + inner_w] = resize(samples, inner_w, inner_h, method)
        return canvas
    if method == "lanczos":
        return _lanczos(samples, width, height)
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=method)


def _lanczos(samples: Any, width: int, height: int) -> Any:
    """OpenCV's Lanczos (8x8 window) on float pixels, clipped to 0..1 like a picture."""
    import cv2
    import numpy as np
    import torch

    frames = [
        cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=cv2.INTER_LANCZOS4).reshape(
            height, width, -1
        )
        for frame in samples.movedim(1, -1).float().cpu().numpy()
    ]
    return torch.from_numpy(np.clip(np.stack(frames), 0, 1)).movedim(-1, 1).to(samples.dtype)
