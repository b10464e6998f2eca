"""SDXL sampler: our denoising loop vs StableDiffusionXLPipeline's, same random-weight UNet, side by side.

Both get the same UNet (the shipped `sdxl` skeleton's architecture, random weights, or the tiny test one),
the same text embeddings, pooled embedding and size conditioning (text encoding and VAE decode are left out:
the pipeline is given prompt embeddings and returns latents), Euler, CFG, the same seed. Rounds alternate;
the median wall time of each loop, its ratio to the pipeline's, the peak memory of each (CUDA) and the
largest latent difference are printed. The issue's target setting is a GPU, fp16, 1024x1024, 30 steps:

    python bench/sdxl_sampler.py --device cuda --dtype float16 --size 1024 --steps 30
    python bench/sdxl_sampler.py --tiny --steps 4 --size 64        # a smoke run on a CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import rounds  # noqa: E402  (after the path is set)

SEED, SCALE = 42, 5.0


def build(tiny: bool, device, dtype):
    """A random-weight SDXL UNet, its scheduler config and the pipeline around it (no text encoders)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from app.runtime.checkpoints import SHIPPED_CONFIGS

    if tiny:
        from tools import make_tiny_random_sdxl

        parts = make_tiny_random_sdxl.make_components(seed=0)
        unet, vae, scheduler = parts["unet"], parts["vae"], parts["scheduler"]
    else:
        folder = SHIPPED_CONFIGS / "sdxl"
        torch.manual_seed(0)
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        scheduler = EulerDiscreteScheduler.from_config(
            EulerDiscreteScheduler.load_config(folder / "scheduler")
        )
    unet = unet.to(device, dtype).eval().requires_grad_(False)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=None,
        tokenizer_2=None,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return unet, dict(scheduler.config), pipe


def conditioning(unet, device, dtype):
    """Random prompt and negative embeddings of the UNet's widths (1 x 77 tokens) and pooled embeddings."""
    import torch

    generator = torch.Generator("cpu").manual_seed(1)
    width = unet.config.cross_attention_dim
    pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    make = lambda *shape: torch.randn(*shape, generator=generator).to(device, dtype)  # noqa: E731
    return make(1, 77, width), make(1, pooled), make(1, 77, width), make(1, pooled)


def run_ours(unet, scheduler_config, embeddings, size: int, factor: int, steps: int):
    import torch

    from app.runtime import sampling
    from app.runtime.families import Setup
    from app.runtime.families.sdxl import StableDiffusionXL
    from app.runtime.guidance import make_guidance
    from app.runtime.schedulers import make_scheduler
    from app.runtime.values import Conditioning, Guider, Schedule

    text, pooled, negative, negative_pooled = embeddings
    schedule = Schedule("euler", steps)
    latents = torch.zeros(1, 4, size // factor, size // factor)
    cond, uncond = StableDiffusionXL.model_inputs(
        Conditioning(text, pooled=pooled),
        Conditioning(negative, pooled=negative_pooled),
        Setup(tuple(latents.shape), factor, unet.config),
    )
    scheduler = make_scheduler(schedule, scheduler_config)
    guidance = make_guidance(Guider("cfg", SCALE))
    return sampling.sample(
        unet, scheduler, schedule, guidance, cond, uncond, latents, SEED, family=StableDiffusionXL
    )


def run_pipeline(pipe, embeddings, size: int, steps: int):
    import torch

    from app.runtime.schedulers import make_scheduler
    from app.runtime.values import Schedule

    text, pooled, negative, negative_pooled = embeddings
    pipe.scheduler = make_scheduler(Schedule("euler", steps), pipe.scheduler.config)
    with torch.inference_mode():
        return pipe(
            prompt_embeds=text,
            pooled_prompt_embeds=pooled,
            negative_prompt_embeds=negative,
            negative_pooled_prompt_embeds=negative_pooled,
            num_inference_steps=steps,
            guidance_scale=SCALE,
            height=size,
            width=size,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="latent",
        ).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny test SDXL UNet instead of a full-size one"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    unet, scheduler_config, pipe = build(args.tiny, device, dtype)
    factor = pipe.vae_scale_factor
    embeddings = conditioning(unet, device, dtype)
    loops = {
        "nodeloom sampler": lambda: run_ours(
            unet, scheduler_config, embeddings, args.size, factor, args.steps
        ),
        "StableDiffusionXLPipeline": lambda: run_pipeline(pipe, embeddings, args.size, args.steps),
    }
    times, peaks, outputs = rounds.alternate(loops, args.rounds, device)
    params = sum(p.numel() for p in unet.parameters()) / 1e9
    ours, theirs = outputs.values()
    print(
        f"SDXL UNet {params:.2f} B params, {args.size}x{args.size}, {args.steps} steps euler, CFG {SCALE}, "
        f"{args.dtype} on {device}, {args.rounds} rounds"
    )
    print(f"  latents agree to {(ours.float() - theirs.float()).abs().max().item():.1e} (max abs)")
    base = statistics.median(times["StableDiffusionXLPipeline"])
    for name, values in times.items():
        median = statistics.median(values)
        peak = f"peak {peaks[name]:.2f} GiB" if device.type == "cuda" else ""
        print(f"  {name:<26} {median:8.3f} s  {median / base:.3f}x  {peak}")


if __name__ == "__main__":
    main()
