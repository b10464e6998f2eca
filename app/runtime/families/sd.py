"""Stable Diffusion 1.x and 2.x: a UNet conditioned on one CLIP text encoder's last layer, no added inputs.

The tiny test and embedded models (tiny-random-sd15, tiny-shapes) are this family too. Never import Qt here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.runtime.families.base import Family, TextEncoder


class StableDiffusion(Family):
    name: ClassVar[str] = "sd"
    pipeline: ClassVar[str] = "StableDiffusionPipeline"
    encoders: ClassVar[tuple[TextEncoder, ...]] = (TextEncoder("text_encoder", "tokenizer", "CLIPTextModel"),)

    @classmethod
    def matches(cls, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        return denoiser_config.get("addition_embed_type") is None
