"""Sampler: the denoising loop (app/runtime/sampling.py) over a model, prompts, latent, schedule and guidance."""

from __future__ import annotations

import dataclasses

from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import control, lora, preview, sampling, text
from app.runtime.families import pixels_per_latent
from app.runtime.guidance import make_guidance
from app.runtime.schedulers import make_scheduler
from app.runtime.step_cache import CachePolicy
from nodes._diffusion import controlnet_module, inference, load, lora_files, report_loras


@node(
    "sampling.sampler",
    title="Sampler",
    category="sampling",
    inputs=[
        Input("model", T.MODEL, "The denoiser."),
        Input("positive", T.CONDITIONING, "What to make."),
        Input("negative", T.CONDITIONING, "What to steer away from (the unconditional branch of CFG)."),
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
    residuals on the steps inside their windows. Reports progress each step, a preview every few steps, and
    stops within one step when cancelled."""
    loaded, device = load(ctx, model.source)
    family = loaded.family
    vae_config = loaded.vae.config
    factor = pixels_per_latent(vae_config)
    key = ("rgb_map", str(device))

    def show(latents, step, total):
        if key not in loaded.derived:
            loaded.derived[key] = preview.fit_rgb_map(loaded.vae, vae_config.scaling_factor, factor)
        ctx.preview(preview.latent_to_rgb(latents, loaded.derived[key]), step, total)

    loras = lora_files(ctx, loaded, model.patches)
    policy = next((p for p in reversed(model.patches) if isinstance(p, CachePolicy)), None)
    with inference():
        unet = loaded.on("unet", device)
        cond, uncond = text.even_out(positive.embeddings, positive.pad, negative.embeddings, negative.pad)
        inputs, negative_inputs = family.model_inputs(
            dataclasses.replace(positive, embeddings=cond),
            dataclasses.replace(negative, embeddings=uncond),
            tuple(latent.samples.shape),
            factor,
        )
        hooks = sampling.Hooks(
            progress=ctx.progress, preview=show, check_cancelled=ctx.check_cancelled, report=ctx.report
        )
        nets = [controlnet_module(ctx, h.controlnet) for h in positive.hints]
        with lora.patched({"unet": unet}, loras) as applied:
            samples = sampling.sample(
                unet,
                make_scheduler(schedule, model.scheduler_config),
                schedule,
                make_guidance(guider, model.prediction_type),
                inputs,
                negative_inputs,
                latent.samples,
                seed,
                hooks,
                cache=policy,
                control=control.binder(positive.hints, nets),
                family=family,
            )
    report_loras(ctx, applied)
    return {"latent": dataclasses.replace(latent, samples=samples.float(), family=model.family)}
