"""Sampler: the denoising loop (app/runtime/sampling.py) over a model, prompts, latent, schedule and guidance."""

from __future__ import annotations

import contextlib
import dataclasses

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import control, inversion, sampling
from app.runtime.step_cache import CacheError, CachePolicy
from nodes import _measure
from nodes._diffusion import controlnet_module
from nodes._sampling import prepared


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
    measure=lambda _params, inputs: _measure.sampler(inputs),
)
def sampler(ctx, model, positive, negative, latent, schedule, guider, seed):
    """Denoises the latent (ComfyUI: KSampler): for each step, scale input -> guidance passes -> model ->
    combine -> scheduler step. The noise for seed S comes from torch.Generator("cpu").manual_seed(S), which
    also drives stochastic schedulers, so results equal diffusers' pipelines and are the same on every GPU.
    A batch of B latents takes its noise from that one generator (like a pipeline given one generator).
    The model's patches apply for this loop only, in order: LoRAs (Load LoRA) add their weights, a Cache
    node's policy skips work. ControlNets attached to the positive conditioning (Apply ControlNet) add their
    residuals on the steps inside their windows. A latent with a noise mask (Set Latent Noise Mask) is
    repainted only where the mask is 1; a latent from an Invert node is sampled down its inversion (this
    node's prompt and guidance; its Scheduler must be the Invert node's). Reports progress each step, a
    preview every few steps, and stops within one step when cancelled."""
    policy = next((p for p in reversed(model.patches) if isinstance(p, CachePolicy)), None)
    with prepared(ctx, model, positive, negative, latent, schedule, guider) as run, _cache_errors():
        if positive.hints and run.family.denoiser != "unet" and not all(h.latents for h in positive.hints):
            raise NodeError(f"a UNet ControlNet cannot steer a {run.family.name} model; load one made for it")
        nets = [controlnet_module(ctx, h.controlnet) for h in positive.hints]
        common = (run.denoiser, run.scheduler, schedule, run.guidance, run.inputs, run.negative_inputs)
        if latent.inversion is not None:  # from an Invert node: sample down its trajectory
            if latent.mask is not None or "concat" in _inpainting(run, latent):
                raise NodeError(
                    "an inverted latent with a noise mask (or on an inpainting model) is not supported yet: "
                    "use one of the two"
                )
            samples = inversion.resample(
                *common,
                latent.samples,
                latent.inversion,
                run.hooks,
                family=run.family,
                control=control.binder(positive.hints, nets),
            )
        else:
            samples = sampling.sample(
                *common,
                latent.samples,
                seed,
                run.hooks,
                cache=policy,
                control=control.binder(positive.hints, nets),
                family=run.family,
                **_inpainting(run, latent),
            )
    out = dataclasses.replace(latent, samples=samples.float(), family=model.family, inversion=None)
    return {"latent": out}


@contextlib.contextmanager
def _cache_errors():
    """A Step Cache policy the model cannot take is this node's error, in one sentence."""
    try:
        yield
    except CacheError as error:
        raise NodeError(str(error)) from None


def _inpainting(run, latent) -> dict:
    """How the loop repaints a masked latent: an inpainting model (2C + 1 input channels) is given the mask
    and the latent (VAE Encode (for Inpainting)'s greyed picture) beside its noise, as its pipeline does;
    any other model blends the kept part back in (`mask`)."""
    channels = latent.samples.shape[1]
    wanted = run.denoiser.config.get("in_channels", channels) if run.family.denoiser == "unet" else channels
    if wanted == channels:
        return {"mask": _mask(latent)}
    if wanted != 2 * channels + 1:
        raise NodeError(f"the model takes {wanted} input channels; the latent has {channels}")
    if latent.mask is None:
        raise NodeError(
            "this is an inpainting model: give its latent a mask (VAE Encode (for Inpainting), or Set Latent "
            "Noise Mask)"
        )
    import torch

    return {
        "concat": torch.cat([_mask(latent).expand(len(latent.samples), -1, -1, -1), latent.samples], dim=1)
    }


def _mask(latent):
    """The latent's noise mask at its size (a mask set before an upscale is resized: nearest)."""
    if latent.mask is None:
        return None
    import torch

    mask = latent.mask.float()
    if tuple(mask.shape[-2:]) != tuple(latent.samples.shape[-2:]):
        mask = torch.nn.functional.interpolate(mask, size=tuple(latent.samples.shape[-2:]), mode="nearest")
    return mask
