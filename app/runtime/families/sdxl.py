"""SDXL base and refiner: a UNet with added conditioning ("text_time": pooled text + size/crop numbers).

Base: CLIP-L and CLIP-G (with projection) both read at the penultimate layer, concatenated (768 + 1280);
the pooled embedding is CLIP-G's projection of its end token. `time_ids` = original size (h, w), crop
top-left (top, left), target size (h, w), in pixels, from the latent's size unless a Size Conditioning
node set them, as StableDiffusionXLPipeline does (the negative branch takes the positive's numbers unless
it has its own). Refiner: CLIP-G only, and `time_ids` end with an aesthetic score (6.0 for the positive,
2.5 for the negative branch by default) instead of the target size, as StableDiffusionXLImg2ImgPipeline
does with `requires_aesthetics_score`. Never import Qt here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.runtime.families.base import CLIP_G_PAD, Family, Setup, TextEncoder
from app.runtime.values import Conditioning

CLIP_L = TextEncoder("text_encoder", "tokenizer", "CLIPTextModel", penultimate=True)
CLIP_G = TextEncoder(
    "text_encoder_2",
    "tokenizer_2",
    "CLIPTextModelWithProjection",
    pad=CLIP_G_PAD,
    penultimate=True,
    pooled=True,
    embedding_key="clip_g",
)
AESTHETIC_SCORE = 6.0
NEGATIVE_AESTHETIC_SCORE = 2.5


def _declared(model_index: dict[str, Any], part: str) -> bool:
    entry = model_index.get(part)
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None


class StableDiffusionXL(Family):
    name: ClassVar[str] = "sdxl"
    pipeline: ClassVar[str] = "StableDiffusionXLPipeline"
    encoders: ClassVar[tuple[TextEncoder, ...]] = (CLIP_L, CLIP_G)

    @classmethod
    def matches(cls, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        return denoiser_config.get("addition_embed_type") == "text_time" and _declared(
            model_index, "text_encoder"
        )

    @classmethod
    def model_inputs(
        cls, positive: Conditioning, negative: Conditioning, setup: Setup
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        factor = setup.pixels_per_latent
        height, width = setup.latents[-2] * factor, setup.latents[-1] * factor
        branches = []
        for conditioning, is_negative in ((positive, False), (negative, True)):
            size = conditioning.size or positive.size or (0, 0, 0, 0, 0, 0)
            numbers = cls.time_ids(size, height, width, conditioning.aesthetic_score, is_negative)
            branches.append(
                {
                    "encoder_hidden_states": conditioning.embeddings,
                    "text_embeds": conditioning.pooled,
                    "time_ids": torch.tensor([numbers], dtype=torch.float32),
                }
            )
        return branches[0], branches[1]

    @staticmethod
    def time_ids(
        size: tuple[int, ...], height: int, width: int, aesthetic_score: float | None, negative: bool
    ) -> list[float]:
        """original (h, w), crop (top, left), target (h, w); zeros mean the image size."""
        original_h, original_w, top, left, target_h, target_w = size
        return [original_h or height, original_w or width, top, left, target_h or height, target_w or width]


class StableDiffusionXLRefiner(StableDiffusionXL):
    name: ClassVar[str] = "sdxl_refiner"
    pipeline: ClassVar[str] = "StableDiffusionXLImg2ImgPipeline"
    encoders: ClassVar[tuple[TextEncoder, ...]] = (CLIP_G,)

    @classmethod
    def matches(cls, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        return denoiser_config.get("addition_embed_type") == "text_time" and not _declared(
            model_index, "text_encoder"
        )

    @staticmethod
    def time_ids(
        size: tuple[int, ...], height: int, width: int, aesthetic_score: float | None, negative: bool
    ) -> list[float]:
        """original (h, w), crop (top, left), aesthetic score (6.0, or 2.5 for the negative branch)."""
        original_h, original_w, top, left = size[:4]
        if aesthetic_score is None:
            aesthetic_score = NEGATIVE_AESTHETIC_SCORE if negative else AESTHETIC_SCORE
        return [original_h or height, original_w or width, top, left, aesthetic_score]
