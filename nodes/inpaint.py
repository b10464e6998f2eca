"""Inpainting: Set Latent Noise Mask, the mask the Sampler repaints through (Blended Latent Diffusion: the rest
of the latent is kept, noised to each step's level, on any model)."""

from __future__ import annotations

import dataclasses

import numpy as np

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node


def _one_mask(params, inputs) -> list[str]:
    given = [name for name in ("mask_image", "mask") if name in inputs]  # the connected ones
    if len(given) != 1:
        return ["connect one mask: a picture to mask_image (white = repaint) or a MASK to mask"]
    return []


@node(
    "latent.noise_mask",
    title="Set Latent Noise Mask",
    category="latent",
    inputs=[
        Input("latent", T.LATENT, "The picture's latent (VAE Encode)."),
        Input(
            "mask_image",
            T.IMAGE,
            "A mask picture: white (above half grey) = repaint, black = keep. A Load Image of a painted mask.",
            optional=True,
        ),
        Input(
            "mask",
            T.MASK,
            "A MASK: 1 = repaint (Inpaint Mask's output). Load Image's mask is its alpha (1 = opaque): turn "
            "`invert` on to repaint the transparent parts.",
            optional=True,
        ),
    ],
    outputs=[Output("latent", T.LATENT, "The same latent, carrying the mask the Sampler repaints through.")],
    params=[
        Param("invert", T.BOOL, False, description="Repaint what the mask keeps, and keep what it repaints."),
        Param("grow", T.INT, 0, min=0, max=256, description="Grow the repainted region by this many pixels."),
        Param(
            "feather",
            T.INT,
            0,
            min=0,
            max=256,
            description="Soften the mask's edge over this many pixels (0: a hard edge, as the inpaint "
            "pipelines have it).",
        ),
    ],
    validate=_one_mask,
)
def noise_mask(ctx, latent, mask_image, mask, invert, grow, feather):
    """Binarizes the mask at half, grows and feathers it, and takes it to the latent's size (nearest for a
    hard edge, area for a feathered one) as 1 = repaint."""
    import cv2
    import torch

    if mask_image is not None:
        pixels = mask_image @ np.array([0.299, 0.587, 0.114], np.float32)  # luminance, B x H x W
    else:
        pixels = np.asarray(mask, np.float32)
        pixels = pixels[None] if pixels.ndim == 2 else pixels
    repaint = (pixels > 0.5).astype(np.float32)
    if invert:
        repaint = 1.0 - repaint
    frames = []
    for frame in repaint:
        if grow:
            frame = cv2.dilate(frame, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        if feather:
            frame = cv2.GaussianBlur(frame, (0, 0), feather / 2)
        frames.append(frame)
    batch = len(latent.samples)
    if len(frames) not in (1, batch):
        raise NodeError(f"{len(frames)} masks for a batch of {batch} latents: give one, or one per latent")
    size = tuple(latent.samples.shape[-2:])
    tensor = torch.from_numpy(np.stack(frames))[:, None]
    resized = torch.nn.functional.interpolate(tensor, size=size, mode="area" if feather else "nearest")
    return {"latent": dataclasses.replace(latent, mask=resized.clamp(0, 1))}
