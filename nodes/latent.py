"""Latents: Empty Latent, VAE Encode (IMAGE -> LATENT) and VAE Decode (LATENT -> IMAGE)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime.values import Latent
from nodes import _measure
from nodes._diffusion import inference, vae_module

MEGAPIXELS = 16.0  # default of $NODELOOM_MAX_MEGAPIXELS: pixels one run may make (width x height x batch)


def max_megapixels() -> float:
    """The size cap one Empty Latent may ask for, from $NODELOOM_MAX_MEGAPIXELS (default 16)."""
    try:
        value = float(os.environ.get("NODELOOM_MAX_MEGAPIXELS", MEGAPIXELS))
    except ValueError:
        return MEGAPIXELS
    return value if value > 0 else MEGAPIXELS


def _size_problems(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    megapixels = params["width"] * params["height"] * params["batch"] / 1e6
    limit = max_megapixels()
    if megapixels <= limit:
        return []
    what = f"{params['batch']} x {params['width']}x{params['height']}" if params["batch"] > 1 else "this size"
    return [
        f"{what} is {megapixels:.1f} megapixels, over the {limit:g} one run may make here (an untiled SD VAE "
        f"decode alone needs about {2 * megapixels:.0f} GB); make it smaller, or raise $NODELOOM_MAX_MEGAPIXELS"
    ]


@node(
    "latent.empty",
    title="Empty Latent",
    category="latent",
    inputs=[
        Input("vae", T.VAE, "Says how many pixels one latent pixel covers and how many channels it has.")
    ],
    outputs=[Output("latent", T.LATENT, "Zeros, to be filled with noise by the Sampler (denoise 1).")],
    params=[
        Param(
            "width",
            T.INT,
            64,
            min=8,
            max=8192,
            step=8,
            description="Image width in pixels (64: the embedded model's size; SD1.5 512, SDXL/SD3/Flux 1024).",
        ),
        Param("height", T.INT, 64, min=8, max=8192, step=8, description="Image height in pixels."),
        Param("batch", T.INT, 1, min=1, max=64, description="Images per run (one generator, see Sampler)."),
    ],
    validate=_size_problems,
    measure=lambda params, _inputs: _measure.pixels(params["width"], params["height"], params["batch"]),
)
def empty_latent(ctx, vae, width, height, batch):
    """An empty latent batch for an image of width x height (multiples of the VAE's pixels per latent)."""
    import torch

    factor = vae.pixels_per_latent
    if width % factor or height % factor:
        raise NodeError(f"width and height must be multiples of {factor} for this VAE, got {width}x{height}")
    shape = (batch, vae.latent_channels, height // factor, width // factor)
    return {"latent": Latent(torch.zeros(shape), vae.family, factor)}


@node(
    "latent.vae_encode",
    title="VAE Encode",
    category="latent",
    inputs=[Input("image", T.IMAGE, "RGB images, 0..1."), Input("vae", T.VAE, "The autoencoder.")],
    outputs=[Output("latent", T.LATENT, "The images' latents (for img2img: Sampler with denoise < 1).")],
    measure=lambda _params, inputs: _measure.vae(inputs.get("image", {}), inputs.get("vae", {}), False, True),
)
def vae_encode(ctx, image, vae):
    """Encodes images to latents: the mean of the VAE's latent distribution (deterministic, so it caches),
    less the VAE's shift, times its scale. Sizes that are not multiples of its pixels per latent are cropped."""
    factor = vae.pixels_per_latent
    height, width = (image.shape[1] // factor) * factor, (image.shape[2] // factor) * factor
    if not height or not width:
        raise NodeError(f"image {image.shape[2]}x{image.shape[1]} is smaller than the VAE's {factor}px cell")
    import torch

    with inference():
        module = vae_module(ctx, vae)
        param = next(module.parameters())
        pixels = torch.from_numpy(np.ascontiguousarray(image[:, :height, :width])).permute(0, 3, 1, 2)
        pixels = (pixels * 2 - 1).to(param.device, param.dtype)
        latents = (module.encode(pixels).latent_dist.mode() - vae.latent_shift) * vae.latent_scale
    return {"latent": Latent(latents.float(), vae.family, factor)}


@node(
    "latent.vae_decode",
    title="VAE Decode",
    category="latent",
    inputs=[Input("latent", T.LATENT, "Latents from a Sampler."), Input("vae", T.VAE, "The autoencoder.")],
    outputs=[Output("image", T.IMAGE, "RGB images, 0..1.")],
    params=[
        Param(
            "tiled",
            T.BOOL,
            False,
            description="Decode in overlapping tiles (diffusers' tiled_decode) when the latent is larger than one tile: "
            "less memory for large images.",
        )
    ],
    measure=lambda params, inputs: _measure.vae(
        inputs.get("latent", {}), inputs.get("vae", {}), params["tiled"]
    ),
)
def vae_decode(ctx, latent, vae, tiled):
    """Decodes latents to images with the VAE (in fp32, as diffusers upcasts SD VAEs)."""
    with inference():
        module = vae_module(ctx, vae)
        param = next(module.parameters())
        z = latent.samples.to(param.device, param.dtype) / vae.latent_scale + vae.latent_shift
        tile = getattr(module, "tile_latent_min_size", None)
        large = tile is not None and max(z.shape[-2:]) > tile
        decoded = module.tiled_decode(z).sample if tiled and large else module.decode(z).sample
        image = (decoded.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    return {"image": np.ascontiguousarray(image.cpu().numpy(), dtype=np.float32)}
