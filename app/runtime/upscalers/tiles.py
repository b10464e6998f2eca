"""Running an image-to-image network over a big picture in tiles, with seams blended.

The picture is cut into a grid of `tile`-sized cores. Each core runs with `overlap` pixels of the picture
around it as context; of that margin, the inner half is blended with the neighbour (weights falling
linearly from 1 at the core's edge to 0) and the outer half is context only. So when the network sees no
further than overlap / 2 pixels, the tiled result equals the whole-picture result; when it sees further,
the blend hides the seam. torch is imported inside functions; never import Qt here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_tiled(
    network: Callable[[Any], Any],
    image: Any,
    scale: int,
    tile: int,
    overlap: int,
    on_tile: Callable[[int, int], None] = lambda done, total: None,
) -> Any:
    """`network` over `image` (B, C, H, W) in tiles; returns (B, C', H * scale, W * scale). tile <= 0 or a
    picture no larger than one tile runs whole."""
    import torch

    height, width = image.shape[-2:]
    if tile <= 0 or (height <= tile and width <= tile):
        on_tile(0, 1)
        out = network(image)
        on_tile(1, 1)
        return out
    overlap = max(0, min(overlap, tile))
    blend = overlap // 2
    cores = [(y, x) for y in range(0, height, tile) for x in range(0, width, tile)]
    total_out, weight = None, None
    for done, (y, x) in enumerate(cores):
        on_tile(done, len(cores))
        y1, x1 = min(y + tile, height), min(x + tile, width)
        top, left = max(0, y - overlap), max(0, x - overlap)
        bottom, right = min(height, y1 + overlap), min(width, x1 + overlap)
        out = network(image[..., top:bottom, left:right])
        ramp_y = _ramp(top, bottom, y, y1, blend, height, image.device)
        ramp_x = _ramp(left, right, x, x1, blend, width, image.device)
        w = (ramp_y[:, None] * ramp_x[None, :]).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        if total_out is None:
            shape = (*out.shape[:2], height * scale, width * scale)
            total_out = torch.zeros(shape, dtype=torch.float32, device=out.device)
            weight = torch.zeros(shape[-2:], dtype=torch.float32, device=out.device)
        region = (..., slice(top * scale, bottom * scale), slice(left * scale, right * scale))
        total_out[region] += out.float() * w
        weight[region[1:]] += w
    on_tile(len(cores), len(cores))
    return (total_out / weight).to(out.dtype)


def _ramp(start: int, end: int, core0: int, core1: int, blend: int, size: int, device: Any) -> Any:
    """Per-pixel weights along one axis of a processed span [start, end) whose core is [core0, core1): 1 in
    the core (and out to the picture's edge), falling over `blend` pixels outside it, 0 beyond."""
    import torch

    at = torch.arange(start, end, device=device, dtype=torch.float32)
    before = (core0 - at).clamp(min=0) if core0 > 0 else torch.zeros_like(at)
    after = (at - (core1 - 1)).clamp(min=0) if core1 < size else torch.zeros_like(at)
    distance = torch.maximum(before, after)
    if blend <= 0:
        return (distance == 0).float()
    return (1 - distance / (blend + 1)).clamp(min=0)
