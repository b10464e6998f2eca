"""SD3 and Flux samplers: our denoising loop vs StableDiffusion3Pipeline's / FluxPipeline's on the same
random-weight transformer, side by side, and what each DiT cache strategy saves.

Both loops get the same transformer, the same (random) text embeddings and pooled embedding, flow-matching
Euler, the same seed; SD3 runs CFG (two branches, batched), Flux dev its distilled guidance (one pass).
Text encoding and VAE decode are left out (the pipelines are given prompt embeddings and return latents).
Rounds alternate; the median wall time of each loop, its ratio to the pipeline's, the peak memory (CUDA)
and the largest latent difference are printed; then, for each Step Cache strategy, our loop's time, its
speedup over our uncached loop and the skipped blocks. Full-size transformers come from the shipped
skeletons (sd3.5-medium, flux-dev) with random weights. The issue's target setting is a GPU:

    python bench/flow_sampler.py --family sd3 --device cuda --dtype bfloat16 --size 1024 --steps 28
    python bench/flow_sampler.py --family flux --device cuda --dtype bfloat16 --size 1024 --steps 20
    python bench/flow_sampler.py --family flux --tiny --size 64 --steps 8    # a smoke run on a CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import rounds  # noqa: E402  (after the path is set)

SEED = 42
SCALES = {"sd3": 5.0, "flux": 3.5}
SKELETONS = {"sd3": "sd3.5-medium", "flux": "flux-dev"}
CACHES = [  # the DiT strategies at bench/dit_cache_speed_quality.py's settings, with the families they run on
    ({"sd3", "flux"}, {"strategy": "first_block", "threshold": 0.05}),
    ({"sd3", "flux"}, {"strategy": "taylorseer", "interval": 3, "start": 2, "order": 1}),
    ({"flux"}, {"strategy": "magcache", "threshold": 0.06, "interval": 3}),  # SD3's ratios: the other bench
    ({"sd3", "flux"}, {"strategy": "delta_dit", "interval": 2, "blocks": 0}),  # boundary: half the steps
    ({"sd3", "flux"}, {"strategy": "ras", "ratio": 0.25, "start": 4, "end": 0, "interval": 5}),
]


def build(family: str, tiny: bool, device, dtype, layers: int | None = None):
    """A random-weight transformer, its scheduler config and the pipeline around it (no text encoders);
    `layers` keeps only the first blocks of a full-size one (for speed runs on a CPU)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    from app.runtime.checkpoints import SHIPPED_CONFIGS

    if tiny:
        from tools import make_tiny_random_dit

        parts = make_tiny_random_dit.make_components(family, seed=0)
        transformer, vae, scheduler = parts["transformer"], parts["vae"], parts["scheduler"]
    else:
        folder = SHIPPED_CONFIGS / SKELETONS[family]
        cls = SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel
        torch.manual_seed(0)
        config = cls.load_config(folder / "transformer")
        if layers:
            config = {**config, "num_layers": layers}
            if "dual_attention_layers" in config:
                config["dual_attention_layers"] = [i for i in config["dual_attention_layers"] if i < layers]
        with torch.device(device):
            transformer = cls.from_config(config)
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            FlowMatchEulerDiscreteScheduler.load_config(folder / "scheduler")
        )
    transformer = transformer.to(device, dtype).eval().requires_grad_(False)
    empty = {"text_encoder": None, "text_encoder_2": None, "tokenizer": None, "tokenizer_2": None}
    if family == "sd3":
        pipe = StableDiffusion3Pipeline(
            transformer=transformer,
            vae=vae,
            scheduler=scheduler,
            text_encoder_3=None,
            tokenizer_3=None,
            **empty,
        )
    else:
        pipe = FluxPipeline(transformer=transformer, vae=vae, scheduler=scheduler, **empty)
    pipe.set_progress_bar_config(disable=True)
    return transformer, dict(scheduler.config), pipe


def embeddings(transformer, device, dtype):
    """Random prompt and negative text embeddings and pooled embeddings of the transformer's widths."""
    import torch

    generator = torch.Generator("cpu").manual_seed(1)
    width, pooled = transformer.config.joint_attention_dim, transformer.config.pooled_projection_dim
    tokens = 333 if "SD3" in type(transformer).__name__ else 512
    make = lambda *shape: torch.randn(*shape, generator=generator).to(device, dtype)  # noqa: E731
    return make(1, tokens, width), make(1, pooled), make(1, tokens, width), make(1, pooled)


def run_ours(family, transformer, scheduler_config, texts, size, steps, cache=None):
    import torch

    from app.runtime import families, sampling
    from app.runtime.schedulers import make_scheduler
    from app.runtime.step_cache import make_policy
    from app.runtime.values import Conditioning, Guider, Schedule

    architecture = families.by_name(family)
    text, pooled, negative, negative_pooled = texts
    schedule = Schedule("euler", steps)
    latents = torch.zeros(1, 16, size // 8, size // 8)
    setup = families.Setup(tuple(latents.shape), 8, transformer.config, SCALES[family])
    cond, uncond = architecture.model_inputs(
        Conditioning(text, pooled=pooled), Conditioning(negative, pooled=negative_pooled), setup
    )
    reported: dict = {}
    hooks = sampling.Hooks(report=lambda **fields: reported.update(fields))
    latents = sampling.sample(
        transformer,
        make_scheduler(schedule, scheduler_config, flow=True),
        schedule,
        architecture.guidance(Guider("cfg", SCALES[family]), "flow"),
        cond,
        uncond,
        latents,
        SEED,
        hooks,
        cache=make_policy(cache["strategy"], cache) if cache else None,
        family=architecture,
    )
    return latents, reported


def run_pipeline(family, pipe, texts, size, steps):
    import torch

    text, pooled, negative, negative_pooled = texts
    extra = {}
    if family == "sd3":
        extra = {"negative_prompt_embeds": negative, "negative_pooled_prompt_embeds": negative_pooled}
    with torch.inference_mode():
        latents = pipe(
            prompt_embeds=text,
            pooled_prompt_embeds=pooled,
            num_inference_steps=steps,
            guidance_scale=SCALES[family],
            height=size,
            width=size,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="latent",
            **extra,
        ).images
    if family == "flux":
        latents = pipe._unpack_latents(latents, size, size, pipe.vae_scale_factor)
    return latents, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("sd3", "flux"), default="flux")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny test transformer instead of a full-size one"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    family = args.family
    transformer, scheduler_config, pipe = build(family, args.tiny, device, dtype)
    texts = embeddings(transformer, device, dtype)
    name = type(pipe).__name__
    loops = {
        "nodeloom sampler": lambda cache=None: run_ours(
            family, transformer, scheduler_config, texts, args.size, args.steps, cache
        ),
        name: lambda: run_pipeline(family, pipe, texts, args.size, args.steps),
    }
    for families, cache in CACHES:
        if family not in families:
            continue
        cache = {**cache, "boundary": args.steps // 2} if cache["strategy"] == "delta_dit" else cache
        loops[f"  cache {cache['strategy']}"] = lambda cache=cache: loops["nodeloom sampler"](cache)
    times, peaks, outputs = rounds.alternate(loops, args.rounds, device)
    params = sum(p.numel() for p in transformer.parameters()) / 1e9
    print(
        f"{type(transformer).__name__} {params:.2f} B params, {args.size}x{args.size}, {args.steps} steps "
        f"flow-matching euler, guidance {SCALES[family]}, {args.dtype} on {device}, {args.rounds} rounds"
    )
    ours, theirs = outputs["nodeloom sampler"][0], outputs[name][0]
    print(f"  latents agree to {(ours.float() - theirs.float()).abs().max().item():.1e} (max abs)")
    base, plain = statistics.median(times[name]), statistics.median(times["nodeloom sampler"])
    for label, values in times.items():
        median = statistics.median(values)
        peak = f"peak {peaks[label]:.2f} GiB" if device.type == "cuda" else ""
        if label.startswith("  cache"):
            reported = outputs[label][1]
            skipped = (
                f"skipped {reported.get('skipped_blocks', 0)}/{reported.get('cache_total_blocks', 0)} blocks"
            )
            print(
                f"  {label:<26} {median:8.3f} s  {plain / median:.2f}x faster than uncached  {skipped}  {peak}"
            )
        else:
            print(f"  {label:<26} {median:8.3f} s  {median / base:.3f}x  {peak}")


if __name__ == "__main__":
    main()
