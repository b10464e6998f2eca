"""Resizing: Upscale Image (to a size), Upscale Latent (to a size) and Upscale Latent By (a factor), the
nodes ComfyUI's ImageScale, LatentUpscale and LatentUpscaleBy become. The work is app/runtime/resize.py."""

from __future__ import annotations

import numpy as np

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import resize as R
from app.runtime.values import Latent


def _size_params(unit: str) -> list[Param]:
    return [
        Param(
            "width",
            T.INT,
            512,
            min=0,
            max=8192,
            step=8,
            description=f"Width in {unit}; 0 keeps the aspect from the height.",
        ),
        Param(
            "height",
            T.INT,
            512,
            min=0,
            max=8192,
            step=8,
            description=f"Height in {unit}; 0 keeps the aspect from the width.",
        ),
        Param(
            "fit",
            T.STRING,
            "stretch",
            choices=R.FITS,
            description="stretch: ignore aspect (ComfyUI's crop disabled); crop: centre-crop to the new aspect "
            "first (crop center); pad: fit inside, black around.",
        ),
    ]


def _method(choices: tuple[str, ...]) -> Param:
    return Param(
        "method",
        T.STRING,
        "bilinear",
        choices=choices,
        description="Interpolation: nearest-exact keeps hard pixels, area averages when shrinking, bicubic and "
        "lanczos are sharper when growing.",
    )


@node(
    "image.scale",
    title="Upscale Image",
    category="image",
    inputs=[Input("image", T.IMAGE, "RGB images, 0..1.")],
    outputs=[Output("image", T.IMAGE, "The images at the new size.")],
    params=[_method(R.METHODS), *_size_params("pixels")],
)
def scale_image(ctx, image, method, width, height, fit):
    """Resizes images (up or down) to width x height."""
    import torch

    width, height = R.target_size(width, height, image.shape[2], image.shape[1])
    pixels = torch.from_numpy(np.ascontiguousarray(image)).movedim(-1, 1)
    out = R.resize(pixels, width, height, method, fit).clamp(0, 1).movedim(1, -1)
    return {"image": np.ascontiguousarray(out.numpy(), dtype=np.float32)}


@node(
    "latent.upscale",
    title="Upscale Latent",
    category="latent",
    inputs=[Input("latent", T.LATENT, "Latents, from a Sampler or VAE Encode.")],
    outputs=[
        Output(
            "latent",
            T.LATENT,
            "The latents for an image of width x height (then a Sampler with denoise < 1).",
        )
    ],
    params=[
        _method(R.LATENT_METHODS),
        *_size_params("image pixels (multiples of the VAE's pixels per latent)"),
    ],
)
def upscale_latent(ctx, latent, method, width, height, fit):
    """Resizes latents to the latent size of a width x height image."""
    factor = latent.pixels_per_latent
    _, _, old_h, old_w = latent.samples.shape
    width, height = R.target_size(width, height, old_w * factor, old_h * factor)
    if width < factor or height < factor:
        raise NodeError(f"{width}x{height} is smaller than one latent pixel ({factor}x{factor} image pixels)")
    samples = R.resize(latent.samples, width // factor, height // factor, method, fit)
    mask = (
        latent.mask if fit == "stretch" else None
    )  # a stretched mask still lines up (the Sampler resizes it)
    return {"latent": Latent(samples, latent.family, factor, mask=mask)}


@node(
    "latent.upscale_by",
    title="Upscale Latent By",
    category="latent",
    inputs=[Input("latent", T.LATENT, "Latents, from a Sampler or VAE Encode.")],
    outputs=[Output("latent", T.LATENT, "The latents, scale_by times larger on each side.")],
    params=[
        _method(R.LATENT_METHODS),
        Param(
            "scale_by",
            T.FLOAT,
            1.5,
            min=0.01,
            max=8.0,
            step=0.05,
            description="Factor on each side (1.5: 512 -> 768).",
        ),
    ],
)
def upscale_latent_by(ctx, latent, method, scale_by):
    """Resizes latents by a factor (each side rounded to whole latent pixels)."""
    _, _, old_h, old_w = latent.samples.shape
    width, height = max(1, round(old_w * scale_by)), max(1, round(old_h * scale_by))
    samples = R.resize(latent.samples, width, height, method)
    return {"latent": Latent(samples, latent.family, latent.pixels_per_latent, mask=latent.mask)}
