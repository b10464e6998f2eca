"""What the Sampler and Invert nodes set up the same way before their loops (not a node family: the registry
skips files named _*): the loaded model on the run's device, the guidance, the scheduler, the model inputs
of both prompts, the loop's hooks and the model's LoRA patches applied for the loop only.

Imports torch only inside functions; never import Qt here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.engine.context import Context, NodeError
from app.runtime import lora, preview, sampling, text
from app.runtime.families import Family, Setup, pixels_per_latent
from app.runtime.schedulers import make_scheduler
from nodes._diffusion import inference, load, lora_files, report_loras


@dataclasses.dataclass
class Prepared:
    loaded: Any
    family: type[Family]
    denoiser: Any
    scheduler: Any
    guidance: Any
    inputs: dict[str, Any]
    negative_inputs: dict[str, Any]
    hooks: sampling.Hooks


@contextmanager
def prepared(ctx: Context, model, positive, negative, latent, schedule, guider) -> Iterator[Prepared]:
    """Everything a denoising loop over `latent` needs, under inference mode with the model's LoRAs
    applied; the LoRAs are removed and reported when the block ends."""
    loaded, device = load(ctx, model.source)
    family = loaded.family
    guidance = family.guidance(guider, model.prediction_type)
    if negative is None:
        if guidance.uses_negative:
            raise NodeError(
                f"guidance {guider.method} at scale {guider.scale:g} makes a negative pass: connect a negative "
                "prompt (a Text Encode with an empty prompt for none)"
            )
        negative = positive
    try:
        scheduler = make_scheduler(schedule, model.scheduler_config, flow=family.flow)
    except ValueError as error:
        raise NodeError(str(error)) from None
    loras = lora_files(ctx, loaded, model.patches)
    with inference():
        denoiser = loaded.on(family.denoiser, device)
        _check_size(family, denoiser.config, latent)
        cond, uncond = text.even_out(positive.embeddings, positive.pad, negative.embeddings, negative.pad)
        setup = Setup(tuple(latent.samples.shape), latent.pixels_per_latent, denoiser.config, guider.scale)
        inputs, negative_inputs = family.model_inputs(
            dataclasses.replace(positive, embeddings=cond),
            dataclasses.replace(negative, embeddings=uncond),
            setup,
        )
        hooks = sampling.Hooks(
            progress=ctx.progress,
            preview=_previews(ctx, loaded, device),
            check_cancelled=ctx.check_cancelled,
            report=ctx.report,
        )
        with lora.patched({family.denoiser: denoiser}, loras) as applied:
            yield Prepared(loaded, family, denoiser, scheduler, guidance, inputs, negative_inputs, hooks)
    report_loras(ctx, applied)


def _check_size(family, config, latent) -> None:
    multiple = family.patch(config)
    height, width = latent.samples.shape[-2:]
    if height % multiple or width % multiple:
        pixels = multiple * latent.pixels_per_latent
        raise NodeError(
            f"this {family.name} model works on {multiple}x{multiple} latent patches: width and height must "
            f"be multiples of {pixels} pixels, got {width * latent.pixels_per_latent}x{height * latent.pixels_per_latent}"
        )


def _previews(ctx, loaded, device):
    """The preview callback: latents -> a small RGB picture through a linear map fitted to the model's
    VAE once per device; None when the model came without its VAE (a diffusion model loaded alone)."""
    if "vae" not in loaded.modules:
        return None
    vae_config = loaded.vae.config
    key = ("rgb_map", str(device))

    def show(latents, step, total):
        if key not in loaded.derived:
            loaded.derived[key] = preview.fit_rgb_map(
                loaded.vae,
                vae_config.scaling_factor,
                pixels_per_latent(vae_config),
                getattr(vae_config, "shift_factor", None) or 0.0,
            )
        ctx.preview(preview.latent_to_rgb(latents, loaded.derived[key]), step, total)

    return show
