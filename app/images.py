"""Image conventions and file I/O shared by nodes, the CLI and the editor.

IMAGE values are numpy float32 arrays shaped (batch, height, width, 3), RGB, 0..1.
MASK values are numpy float32 arrays shaped (batch, height, width), 0..1 (1 = keep/opaque).
numpy + opencv only: never import torch or Qt here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageFileError(ValueError):
    """An image file that cannot be read or written; the message names it."""


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float 0..1 -> uint8 0..255 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def from_uint8(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def read(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an image file as (IMAGE with batch 1, MASK with batch 1 from alpha or all ones)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None:
        raise ImageFileError(f"{path}: not an image opencv can read")
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    pixels = raw.astype(np.float32) / scale
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[-1]
    if channels == 1:
        rgb, alpha = np.repeat(pixels, 3, axis=-1), None
    elif channels == 4:
        rgb, alpha = pixels[..., 2::-1], pixels[..., 3]
    else:
        rgb, alpha = pixels[..., 2::-1], None
    mask = alpha if alpha is not None else np.ones(rgb.shape[:2], np.float32)
    return np.ascontiguousarray(rgb)[None], np.ascontiguousarray(mask)[None]


def encode_png(image: np.ndarray, compression: int = 4) -> bytes:
    """One HxWx3 float or uint8 RGB image -> PNG bytes."""
    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    ok, data = cv2.imencode(
        ".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, compression]
    )
    if not ok:
        raise ImageFileError("PNG encoding failed")
    return data.tobytes()


def prefix_problem(prefix: str) -> str | None:
    """Why `prefix` cannot name output files, or None: a plain file name part that stays in the output
    folder (no separators, not '.' or '..', no control characters, at most 100 characters)."""
    if not prefix or prefix in (".", "..") or Path(prefix).name != prefix or "\\" in prefix:
        return f"prefix {prefix!r} must be a plain name: files are written inside the output folder"
    if len(prefix) > 100:
        return f"prefix is {len(prefix)} characters long; at most 100"
    if any(ord(c) < 32 or ord(c) == 127 for c in prefix):
        return "prefix may not contain control characters"
    return None


FIT_MODES = ("stretch", "crop", "pad")


def fit(image: np.ndarray, width: int, height: int, mode: str = "crop", pad_value: float = 0.0) -> np.ndarray:
    """Resize one HxWxC image to width x height: `stretch`, `crop` (fill, keep aspect, centre crop) or
    `pad` (fit inside, keep aspect, centre on `pad_value`). Area filter when shrinking, cubic when growing."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if mode == "stretch":
        return _resize(image, width, height)
    scale = max(width / w, height / h) if mode == "crop" else min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = _resize(image, new_w, new_h)
    if mode == "crop":
        top, left = (new_h - height) // 2, (new_w - width) // 2
        return resized[top : top + height, left : left + width]
    canvas = np.full((height, width, *image.shape[2:]), pad_value, image.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width * height < image.shape[0] * image.shape[1]
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    out = out.reshape(height, width, *image.shape[2:])
    return np.clip(out, 0.0, 1.0) if out.dtype != np.uint8 else out
