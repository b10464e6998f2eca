"""Inpainting: Set Latent Noise Mask, the mask the Sampler repaints through (Blended Latent Diffusion: the rest
of the latent is kept, noised to each step's level, on any model), and VAE Encode (for Inpainting), which also
greys the region out of the picture before encoding it: what inpainting (9-channel) models are given."""

from __future__ import annotations

import dataclasses

import numpy as np

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from nodes.latent import vae_encode


def _one_mask(params, inputs) -> list[str]:
    given = [name for name in ("mask_image", "mask") if name in inputs]  # the connected ones
    if len(given) != 1:
        return ["connect one mask: a picture to mask_image (white = repaint) or a MASK to mask"]
    return []


_MASK_INPUTS = [
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
]
_INVERT = Param(
    "invert", T.BOOL, False, description="Repaint what the mask keeps, and keep what it repaints."
)
_FEATHER = Param(
    "feather",
    T.INT,
    0,
    min=0,
    max=256,
    description="Soften the mask's edge over this many pixels (0: a hard edge, as the inpaint pipelines have it).",
)


def _grow(default: int) -> Param:
    return Param(
        "grow", T.INT, default, min=0, max=256, description="Grow the repainted region by this many pixels."
    )


@node(
    "latent.noise_mask",
    title="Set Latent Noise Mask",
    category="latent",
    inputs=[
        Input("latent", T.LATENT, "The picture's latent (VAE Encode)."),
        *_MASK_INPUTS,
    ],
    outputs=[Output("latent", T.LATENT, "The same latent, carrying the mask the Sampler repaints through.")],
    params=[_INVERT, _grow(0), _FEATHER],
    validate=_one_mask,
)
def noise_mask(ctx, latent, mask_image, mask, invert, grow, feather):
    """Binarizes the mask at half, grows and feathers it, and takes it to the latent's size (nearest for a
    hard edge, area for a feathered one) as 1 = repaint."""
    frames = _repaint(mask_image, mask, invert, grow, feather)
    return {"latent": dataclasses.replace(latent, mask=_at_latent_size(frames, latent, feather))}


@node(
    "latent.vae_encode_inpaint",
    title="VAE Encode (for Inpainting)",
    category="latent",
    inputs=[
        Input("image", T.IMAGE, "RGB images, 0..1."),
        Input("vae", T.VAE, "The autoencoder."),
        *_MASK_INPUTS,
    ],
    outputs=[
        Output(
            "latent",
            T.LATENT,
            "The latents of the pictures with the region to repaint greyed out, carrying the mask: what an "
            "inpainting (9-channel) model is given beside its noise; other models repaint the mask as with "
            "Set Latent Noise Mask.",
        )
    ],
    params=[_INVERT, _grow(6), _FEATHER],
    validate=_one_mask,
)
def vae_encode_inpaint(ctx, image, vae, mask_image, mask, invert, grow, feather):
    """Greys the (grown) region to repaint (0.5, as ComfyUI and the inpaint pipelines do), encodes the
    pictures (VAE Encode) and attaches the mask at the latent's size."""
    frames = _repaint(mask_image, mask, invert, grow, 0)
    if frames.shape[-2:] != image.shape[1:3]:
        raise NodeError(
            f"the mask is {frames.shape[-1]}x{frames.shape[-2]} but the picture {image.shape[2]}x{image.shape[1]}"
        )
    hidden = frames[..., None] > 0.5
    greyed = np.where(hidden, np.float32(0.5), image).astype(np.float32)
    latent = vae_encode(ctx, greyed, vae)["latent"]
    if feather:
        frames = _repaint(mask_image, mask, invert, grow, feather)
    return {"latent": dataclasses.replace(latent, mask=_at_latent_size(frames, latent, feather))}


def _repaint(mask_image, mask, invert, grow, feather) -> np.ndarray:
    """The full-size masks (N, H, W), 1 = repaint: binarized at half, inverted, grown, feathered."""
    import cv2

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
    return np.stack(frames)


def _at_latent_size(frames: np.ndarray, latent, feather: int):
    """The masks at the latent's size (nearest for a hard edge, area for a feathered one), one or one per
    latent."""
    import torch

    batch = len(latent.samples)
    if len(frames) not in (1, batch):
        raise NodeError(f"{len(frames)} masks for a batch of {batch} latents: give one, or one per latent")
    size = tuple(latent.samples.shape[-2:])
    tensor = torch.from_numpy(frames)[:, None]
    resized = torch.nn.functional.interpolate(tensor, size=size, mode="area" if feather else "nearest")
    return resized.clamp(0, 1)
