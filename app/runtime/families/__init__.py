"""Model families (one module each): which architecture a checkpoint is and how it is fed and called.

`detect(model_index, unet_config)` returns the family class of a diffusers folder or config skeleton;
`by_name(name)` the class a loaded model recorded. Never import torch at module level or Qt here.
"""

from __future__ import annotations

from typing import Any

from app.runtime.families.base import Family, TextEncoder, pixels_per_latent
from app.runtime.families.sd import StableDiffusion
from app.runtime.families.sdxl import StableDiffusionXL, StableDiffusionXLRefiner

FAMILIES: tuple[type[Family], ...] = (StableDiffusionXL, StableDiffusionXLRefiner, StableDiffusion)

# Compatibility families (app/runtime/checkpoints) whose denoiser is a diffusers UNet2DConditionModel, which
# UNet-only features (DeepCache, PAB, attention-layer guidance) need; every tiny-* model is one too.
UNET_FAMILIES = ("sd15", "sd2", "sdxl", "sdxl_refiner")


def has_unet(family: str | None) -> bool:
    """Whether a compatibility family's denoiser is a UNet (unknown families are given the benefit)."""
    return not family or family in UNET_FAMILIES or family.startswith("tiny-")


class UnknownFamily(ValueError):
    """No family knows this model; the message says what it looked at."""


def detect(model_index: dict[str, Any], unet_config: dict[str, Any]) -> type[Family]:
    for family in FAMILIES:
        if family.matches(model_index, unet_config):
            return family
    kind = unet_config.get("addition_embed_type")
    raise UnknownFamily(f"no model family takes a UNet with addition_embed_type {kind!r}")


def by_name(name: str) -> type[Family]:
    return next(family for family in FAMILIES if family.name == name)


__all__ = [
    "FAMILIES",
    "UNET_FAMILIES",
    "Family",
    "TextEncoder",
    "UnknownFamily",
    "by_name",
    "detect",
    "has_unet",
    "pixels_per_latent",
]
