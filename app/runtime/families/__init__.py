"""Model families (one module each): which architecture a checkpoint is and how it is fed and called.

`detect(model_index, denoiser_config)` returns the family class of a diffusers folder or config skeleton;
`by_name(name)` the class a loaded model recorded. A compatibility family (what graphs check: "sd15",
"sdxl", "sd3", "flux", "tiny-<model>") runs on one architecture: `architecture_of(name)` says which, for
the standard names from ARCHITECTURES and for a small model's own name from what `remember` was told when
its config was read. Never import torch at module level or Qt here.
"""

from __future__ import annotations

from typing import Any

from app.runtime.families.base import Family, Setup, TextEncoder, pixels_per_latent
from app.runtime.families.flux import Flux
from app.runtime.families.sd import StableDiffusion
from app.runtime.families.sd3 import StableDiffusion3
from app.runtime.families.sdxl import StableDiffusionXL, StableDiffusionXLRefiner

FAMILIES: tuple[type[Family], ...] = (
    StableDiffusion3,
    Flux,
    StableDiffusionXL,
    StableDiffusionXLRefiner,
    StableDiffusion,
)

# The architecture (family class name) of each standard compatibility family.
ARCHITECTURES: dict[str, str] = {
    "sd15": "sd",
    "sd2": "sd",
    "sdxl": "sdxl",
    "sdxl_refiner": "sdxl_refiner",
    "sd3": "sd3",
    "flux": "flux",
}
_LEARNED: dict[str, str] = {}  # small models' own compatibility families, as their configs were read


def remember(compatibility: str, family: type[Family]) -> None:
    """Note that the compatibility family `compatibility` runs on `family` (checkpoints calls this)."""
    if compatibility not in ARCHITECTURES:
        _LEARNED[compatibility] = family.name


def architecture_of(compatibility: str | None) -> str | None:
    """The architecture a compatibility family runs on, or None when nothing says (yet)."""
    if not compatibility:
        return None
    return ARCHITECTURES.get(compatibility) or _LEARNED.get(compatibility)


def has_unet(family: str | None) -> bool:
    """Whether a compatibility family's denoiser is a diffusers UNet2DConditionModel, which UNet-only
    features (DeepCache, PAB, attention-layer guidance) need; unknown families are given the benefit."""
    architecture = architecture_of(family)
    return architecture is None or by_name(architecture).denoiser == "unet"


def is_flow(family: str | None) -> bool:
    """Whether a compatibility family is a flow-matching model (False when unknown)."""
    architecture = architecture_of(family)
    return architecture is not None and by_name(architecture).flow


class UnknownFamily(ValueError):
    """No family knows this model; the message says what it looked at."""


def detect(model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> type[Family]:
    for family in FAMILIES:
        if family.matches(model_index, denoiser_config):
            return family
    kind = denoiser_config.get("_class_name") or "UNet"
    extra = denoiser_config.get("addition_embed_type")
    raise UnknownFamily(
        f"no model family takes a {kind}" + (f" with addition_embed_type {extra!r}" if extra else "")
    )


def by_name(name: str) -> type[Family]:
    return next(family for family in FAMILIES if family.name == name)


__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "Family",
    "Setup",
    "TextEncoder",
    "UnknownFamily",
    "architecture_of",
    "by_name",
    "detect",
    "has_unet",
    "is_flow",
    "pixels_per_latent",
    "remember",
]
