"""What a model family is: the one place that knows how a denoiser of that architecture is loaded, fed
text, and called. The Sampler, Text Encode and the loaders ask the family; they never test for one.

A family is a small class with class-level data and a few methods (one module per family: sd.py, sdxl.py,
sd3.py, flux.py). `families.detect(model_index, denoiser_config)` picks the family of a diffusers folder or
config skeleton. The compatibility family a graph checks ("sd15", "sdxl", "flux", "tiny-shapes", ...) is
a separate, finer name (app/runtime/checkpoints.py); the family class here is the architecture that name
runs on, and `families.architecture_of(name)` says which.

What a family says, and where the Sampler asks it:
- `encoders` and `encode`: which text encoders, and how their outputs become (embeddings, pooled);
- `model_inputs`: the named tensors each guidance branch feeds the denoiser (text, pooled, size numbers,
  Flux's distilled guidance), batched and split alike by every guidance method;
- `forward`: one denoiser call from (latents, timestep, inputs) to the prediction, in the latent layout
  the rest of the app uses (B, C, h, w): Flux packs 2x2 patches inside it and unpacks the result;
- `flow`: whether it predicts a flow velocity (rectified flow: SD3, Flux) rather than epsilon / v, which
  picks the flow-matching version of each scheduler; `timestep_options`: what its pipeline passes to
  `scheduler.set_timesteps` (Flux: its sigma list and the shift `mu` from the image size);
- `guidance`: how a GUIDER becomes the guidance object (Flux dev: distilled guidance, no CFG batch).

Adding a family: a module with a `Family` subclass (detection, components, text encoders, model inputs,
forward), appended to `families.FAMILIES`, plus a config skeleton under assets/configs and an oracle test
against its diffusers pipeline. torch is imported inside the methods; never import Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from app.runtime.step_cache.base import unet_forward
from app.runtime.values import Conditioning

CLIP_L_PAD = "<|endoftext|>"
CLIP_G_PAD = "!"  # SDXL's and SD3's tokenizer_2: "!" (id 0) is a special pad token, as diffusers ships it


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a family and how its output is read.

    Args:
        part: the component name (`text_encoder`, `text_encoder_2`), as in the diffusers folder.
        tokenizer: the tokenizer component that goes with it.
        cls: the transformers class (`CLIPTextModel`, `CLIPTextModelWithProjection`, `T5EncoderModel`).
        pad: the pad token of the shipped CLIP tokenizer used when a folder has none.
        penultimate: True when the family reads the layer before the last without the final layer norm
            (SDXL, SD3); False reads the last layer through the final norm (SD1.x/SD2), clip skip counting back.
        pooled: True when this encoder gives the pooled embedding the model is conditioned on.
        embedding_key: which vectors of a textual-inversion file belong to this encoder (`clip_l`, `clip_g`).
        kind: "clip" (77-token chunks, A1111 weighting) or "t5" (one sequence of `max_length` tokens).
        max_length: tokens a T5 encoder reads; longer prompts are cut there, as the pipelines do.
        optional: the model runs without it (SD3's T5): zeros stand in, as StableDiffusion3Pipeline does.
    """

    part: str
    tokenizer: str
    cls: str
    pad: str = CLIP_L_PAD
    penultimate: bool = False
    pooled: bool = False
    embedding_key: str = "clip_l"
    kind: str = "clip"
    max_length: int = 77
    optional: bool = False


@dataclass(frozen=True)
class Setup:
    """What the Sampler knows of one run when it asks a family for model inputs: the latents' shape
    (B, C, h, w), image pixels per latent pixel, the denoiser's config and the Guidance node's scale."""

    latents: tuple[int, ...]
    pixels_per_latent: int
    config: Any
    guidance_scale: float = 0.0


def count_blocks(shapes: dict[str, Any], prefix: str) -> int:
    """How many numbered blocks (`prefix`0., `prefix`1., ...) a model's tensor names hold."""
    return len({key[len(prefix) :].split(".", 1)[0] for key in shapes if key.startswith(prefix)})


def pixels_per_latent(vae_config: Any) -> int:
    """Image pixels per latent pixel along a side: the VAE halves the size at every level but the last."""
    return 2 ** (len(vae_config.block_out_channels) - 1)


class Family:
    """Base of every family: the SD1.x behaviour (a UNet, one CLIP, no added model inputs)."""

    name: ClassVar[str] = "sd"
    pipeline: ClassVar[str] = "StableDiffusionPipeline"  # diffusers class for single-file loading
    denoiser: ClassVar[str] = "unet"  # the denoiser's component name (its diffusers subfolder)
    encoders: ClassVar[tuple[TextEncoder, ...]] = ()
    flow: ClassVar[bool] = False
    cuda_dtype: ClassVar[str] = "float16"  # the denoiser's and text encoders' dtype on CUDA
    guidance_methods: ClassVar[tuple[str, ...] | None] = None  # Guidance methods it takes (None: all)

    @classmethod
    def matches(cls, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        raise NotImplementedError

    @classmethod
    def parts(cls) -> tuple[str, ...]:
        """The torch modules of a checkpoint of this family, in loading order."""
        return (cls.denoiser, "vae", *(e.part for e in cls.encoders))

    @classmethod
    def encode(
        cls,
        encoders: list[tuple[TextEncoder, Any, Any]],
        text: str,
        clip_skip: int,
        device: Any,
        vectors: Any,
        denoiser_config: Any = None,
    ) -> tuple[Any, Any]:
        """(embeddings (1, tokens, dim), pooled) of a prompt; `encoders` lists (spec, module or None when an
        optional one is absent, tokenizer); `vectors(spec)` is an encoder's textual-inversion lookup;
        `denoiser_config` the denoiser's config when it is loaded alongside (SD3 sizes its zeros by it).
        SD-class: the CLIP outputs side by side (app.runtime.text)."""
        from app.runtime import text as prompts

        return prompts.encode_prompt(encoders, text, clip_skip, device, vectors)

    @classmethod
    def model_inputs(
        cls, positive: Conditioning, negative: Conditioning, setup: Setup
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The tensors the positive and the negative branch of a model call need, by name, batch first.

        `encoder_hidden_states` always; families with added conditioning add theirs (SDXL: `text_embeds`,
        `time_ids`; SD3: `pooled_projections`). Guidance batches and splits every entry the same way.
        """
        return {"encoder_hidden_states": positive.embeddings}, {"encoder_hidden_states": negative.embeddings}

    @staticmethod
    def denoiser_kwargs(inputs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of `forward` for a branch's inputs (see `model_inputs`)."""
        added = {k: v for k, v in inputs.items() if k != "encoder_hidden_states"}
        kwargs = {"encoder_hidden_states": inputs["encoder_hidden_states"]}
        if added:
            kwargs["added_cond_kwargs"] = added
        return kwargs

    # One denoiser call: forward(module, sample (B, C, h, w), timestep, **denoiser_kwargs) -> prediction.
    forward = staticmethod(unet_forward)

    @classmethod
    def timestep_options(
        cls, scheduler: Any, steps: int, latents_shape: tuple[int, ...], config: Any
    ) -> dict[str, Any]:
        """Keyword arguments the family's pipeline gives `scheduler.set_timesteps` besides the step count."""
        return {}

    @classmethod
    def skeleton_for(cls, shapes: dict[str, tuple[int, ...]]) -> str | None:
        """The shipped config skeleton of a diffusion-model-only file with these tensor shapes (its
        header, `model.diffusion_model.` removed) when it is this family's, else None."""
        return None

    @staticmethod
    def to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
        """A denoiser's tensors (original or diffusers layout) in diffusers' names."""
        return state

    @staticmethod
    def lora_to_peft(tensors: dict[str, Any], config: Any) -> tuple[dict[str, Any], list[str]] | None:
        """A LoRA in the family's original module names as diffusers/peft tensors (`<part>.<module>.lora_A
        / lora_B.weight`) and the keys it left for the generic converters; None when the family has no
        names of its own (app/runtime/lora.py handles SD-class LoRAs)."""
        return None

    @staticmethod
    def sizes(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
        """The denoiser config values read from its tensors' shapes (diffusers names): the sizes that
        vary between models of the family, so one skeleton serves them all."""
        return {}

    @staticmethod
    def patch(config: Any) -> int:
        """Latent pixels per denoiser token along a side: latent sizes must be multiples of it."""
        return 1

    @classmethod
    def guidance(cls, guider: Any, prediction_type: str) -> Any:
        """The guidance object of one sampling run (app.runtime.guidance)."""
        from app.runtime.guidance import make_guidance

        return make_guidance(guider, prediction_type)
