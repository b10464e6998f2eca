"""What a model family is: the one place that knows how a denoiser of that architecture is loaded, fed
text, and called. The Sampler, Text Encode and the loaders ask the family; they never test for one.

A family is a small class with class-level data and a few methods (one module per family: sd.py, sdxl.py).
`families.detect(model_index, unet_config)` picks the family of a diffusers folder or config skeleton.
The compatibility family a graph checks ("sd15", "sdxl", "tiny-shapes", ...) is a separate, finer name
(app/runtime/checkpoints.py); the family class here is the architecture that name runs on.

Adding a family: a module with a `Family` subclass (detection, components, text encoders, the model's
added inputs), appended to `families.FAMILIES`, plus a config skeleton under assets/configs and an oracle
test against its diffusers pipeline. torch is imported inside the methods; never import Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from app.runtime.values import Conditioning

CLIP_L_PAD = "<|endoftext|>"
CLIP_G_PAD = "!"  # SDXL's and SD3's tokenizer_2: "!" (id 0) is a special pad token, as diffusers ships it


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a family and how its output is read.

    Args:
        part: the component name (`text_encoder`, `text_encoder_2`), as in the diffusers folder.
        tokenizer: the tokenizer component that goes with it.
        cls: the transformers class (`CLIPTextModel`, `CLIPTextModelWithProjection`).
        pad: the pad token of the shipped tokenizer used when a folder has none.
        penultimate: True when the family reads the layer before the last without the final layer norm
            (SDXL); False reads the last layer through the final norm (SD1.x/SD2), clip skip counting back.
        pooled: True when this encoder gives the pooled embedding the model is conditioned on.
        embedding_key: which vectors of a textual-inversion file belong to this encoder (`clip_l`, `clip_g`).
    """

    part: str
    tokenizer: str
    cls: str
    pad: str = CLIP_L_PAD
    penultimate: bool = False
    pooled: bool = False
    embedding_key: str = "clip_l"


def pixels_per_latent(vae_config: Any) -> int:
    """Image pixels per latent pixel along a side: the VAE halves the size at every level but the last."""
    return 2 ** (len(vae_config.block_out_channels) - 1)


class Family:
    """Base of every family: the SD1.x behaviour (one CLIP, no added model inputs)."""

    name: ClassVar[str] = "sd"
    pipeline: ClassVar[str] = "StableDiffusionPipeline"  # diffusers class for single-file loading
    encoders: ClassVar[tuple[TextEncoder, ...]] = ()

    @classmethod
    def matches(cls, model_index: dict[str, Any], unet_config: dict[str, Any]) -> bool:
        raise NotImplementedError

    @classmethod
    def parts(cls) -> tuple[str, ...]:
        """The torch modules of a checkpoint of this family, in loading order."""
        return ("unet", "vae", *(e.part for e in cls.encoders))

    @classmethod
    def model_inputs(
        cls,
        positive: Conditioning,
        negative: Conditioning,
        latents_shape: tuple[int, ...],
        pixels_per_latent: int,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The tensors the positive and the negative branch of a model call need, by name, batch first.

        `encoder_hidden_states` always; families with added conditioning add theirs (SDXL: `text_embeds`,
        `time_ids`). Guidance batches and splits every entry the same way.
        """
        return {"encoder_hidden_states": positive.embeddings}, {"encoder_hidden_states": negative.embeddings}

    @staticmethod
    def unet_kwargs(inputs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of the denoiser call for a branch's inputs (see `model_inputs`)."""
        added = {k: v for k, v in inputs.items() if k != "encoder_hidden_states"}
        kwargs = {"encoder_hidden_states": inputs["encoder_hidden_states"]}
        if added:
            kwargs["added_cond_kwargs"] = added
        return kwargs
