"""Cheap latent -> RGB previews: a per-VAE linear map (the latent channels + bias -> RGB).

The map is fitted by least squares on a few small random latents decoded once with the model's own VAE
(block-averaged down to latent resolution), so it works for any SD-class VAE without shipped tables.
Fitting costs one tiny VAE decode per loaded VAE; applying it is one small matrix product per preview.
torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_rgb_map(vae: Any, latent_scale: float, pixels_per_latent: int, latent_shift: float = 0.0) -> Any:
    """(C + 1, 3) float32 tensor: [latent channels, 1] @ map ~ RGB in 0..1 at latent resolution, for
    latents stored as (z - latent_shift) * latent_scale.

    Fitted by least squares on what the VAE itself makes of pictures: colourful test pictures (flat
    colours, blocks of random colours, gradients) are encoded, and each latent pixel is paired with the
    mean colour of the image pixels it covers. Latents of real pictures, which a sampler converges to, are
    what the map must read; random latents decode to colours no model makes (the old fit's wrong colours)."""
    import torch

    generator = torch.Generator("cpu").manual_seed(0)
    side = 8 * pixels_per_latent
    flat = torch.rand((12, 3, 1, 1), generator=generator).expand(12, 3, side, side).clone()
    quarter = side // 4
    flat[6:, :, quarter:-quarter, quarter:-quarter] = torch.rand((6, 3, 1, 1), generator=generator)  # a shape
    blocks = torch.nn.functional.interpolate(torch.rand((6, 3, 4, 4), generator=generator), size=side)
    ramp = torch.linspace(0, 1, side)
    gradients = torch.stack(
        [
            ramp[None, :].expand(side, side),
            ramp[:, None].expand(side, side),
            1 - ramp[None, :].expand(side, side),
        ]
    )
    pictures = torch.cat([flat, blocks, gradients[None]])
    param = next(vae.parameters())
    with torch.inference_mode():
        encoded = vae.encode((pictures * 2 - 1).to(param.device, param.dtype)).latent_dist.mode()
    latents = (encoded.float().cpu() - latent_shift) * latent_scale
    rgb = torch.nn.functional.avg_pool2d(pictures, pixels_per_latent)
    channels = latents.shape[1]
    inputs = torch.cat([latents, torch.ones_like(latents[:, :1])], dim=1)
    rows = inputs.permute(0, 2, 3, 1).reshape(-1, channels + 1)
    targets = rgb.permute(0, 2, 3, 1).reshape(-1, 3)
    return torch.linalg.lstsq(rows, targets).solution


def latent_to_rgb(latents: Any, rgb_map: Any) -> np.ndarray:
    """The first latent of a batch as a uint8 (h, w, 3) preview image."""
    import torch

    first = latents[0].detach().float().cpu()
    rows = torch.cat([first, torch.ones_like(first[:1])]).permute(1, 2, 0)
    image = (rows @ rgb_map).clamp(0, 1)
    return (image.numpy() * 255).round().astype(np.uint8)
