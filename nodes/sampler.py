"""Sampler: the denoising loop (app/runtime/sampling.py) over a model, prompts, latent, schedule and guidance."""

from __future__ import annotations

import contextlib
import dataclasses

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import control, lora, preview, sampling, text
from app.runtime.families import Setup, pixels_per_latent
from app.runtime.schedulers import make_scheduler
from app.runtime.step_cache import CacheError, CachePolicy
from nodes._diffusion import controlnet_module, inference, load, lora_files, report_loras


@node(
    "sampling.sampler",
    title="Sampler",
    category="sampling",
    inputs=[
        Input("model", T.MODEL, "The denoiser."),
        Input("positive", T.CONDITIONING, "What to make."),
        Input(
            "negative",
            T.CONDITIONING,
            "What to steer away from (the unconditional branch of CFG). Optional where guidance makes no "
            "negative pass (Flux dev's distilled guidance, CFG scale 1).",
            optional=True,
        ),
        Input("latent", T.LATENT, "Empty Latent (txt2img) or VAE Encode (img2img, with denoise < 1)."),
        Input("schedule", T.SCHEDULE, "From a Scheduler node."),
        Input("guider", T.GUIDER, "From a Guidance node."),
    ],
    outputs=[Output("latent", T.LATENT, "The denoised latents, for VAE Decode.")],
    params=[
        Param(
            "seed",
            T.SEED,
            0,
            linkable=True,
            description="Noise seed. A batch draws all its noise from one generator seeded with it.",
        )
    ],
)
def sampler(ctx, model, positive, negative, latent, schedule, guider, seed):
    """Denoises the latent (ComfyUI: KSampler): for each step, scale input -> guidance passes -> model ->
    combine -> scheduler step. The noise for seed S comes from torch.Generator("cpu").manual_seed(S), which
    also drives stochastic schedulers, so results equal diffusers' pipelines and are the same on every GPU.
    A batch of B latents takes its noise from that one generator (like a pipeline given one generator).
    The model's patches apply for this loop only, in order: LoRAs (Load LoRA) add their weights, a Cache
    node's policy skips work. ControlNets attached to the positive conditioning (Apply ControlNet) add their
    residuals on the steps inside their windows. A latent with a noise mask (Set Latent Noise Mask) is
    repainted only where the mask is 1. Reports progress each step, a preview every few steps, and stops
    within one step when cancelled."""
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
    if positive.hints and family.denoiser != "unet":
        raise NodeError(f"ControlNets on {family.name} models are not supported yet (only UNet models)")
    try:
        scheduler = make_scheduler(schedule, model.scheduler_config, flow=family.flow)
    except ValueError as error:
        raise NodeError(str(error)) from None
    loras = lora_files(ctx, loaded, model.patches)
    policy = next((p for p in reversed(model.patches) if isinstance(p, CachePolicy)), None)
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
        nets = [controlnet_module(ctx, h.controlnet) for h in positive.hints]
        with lora.patched({family.denoiser: denoiser}, loras) as applied, _cache_errors():
            samples = sampling.sample(
                denoiser,
                scheduler,
                schedule,
                guidance,
                inputs,
                negative_inputs,
                latent.samples,
                seed,
                hooks,
                cache=policy,
                control=control.binder(positive.hints, nets),
                family=family,
                mask=_mask(latent),
            )
    report_loras(ctx, applied)
    return {"latent": dataclasses.replace(latent, samples=samples.float(), family=model.family)}


@contextlib.contextmanager
def _cache_errors():
    """A Step Cache policy the model cannot take is this node's error, in one sentence."""
    try:
        yield
    except CacheError as error:
        raise NodeError(str(error)) from None


def _mask(latent):
    """The latent's noise mask at its size (a mask set before an upscale is resized: nearest)."""
    if latent.mask is None:
        return None
    import torch

    mask = latent.mask.float()
    if tuple(mask.shape[-2:]) != tuple(latent.samples.shape[-2:]):
        mask = torch.nn.functional.interpolate(mask, size=tuple(latent.samples.shape[-2:]), mode="nearest")
    return mask


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
