"""Sampler overhead: our txt2img graph vs a hand-written diffusers loop vs StableDiffusionPipeline.

All three use the SAME loaded modules (the model manager's), prompt, seed, scheduler (Euler), steps, size
and CFG scale, and do the same work: encode prompt + negative, denoise with batched CFG, VAE decode. Runs
are interleaved; the median wall and CPU time of each is printed with its ratio to the hand-written loop
(target: ours <= 1.02x). Model loading is excluded. Two sizes: the tiny random model (diffusers' test UNet) and a larger
random UNet (channels 32/64/128, 2 layers per block, 64x64 image), written to a temporary model root.

    python bench/sampler_overhead.py [--steps 20] [--rounds 7] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT, SEED, SCALE = "a red circle on a blue background", 42, 7.5


def ours(graph, device: str):
    from app.engine.context import RunSettings
    from app.engine.executor import Executor
    from app.registry import default_registry

    result = Executor(default_registry()).run(graph, ["decode"], RunSettings(device=device))
    assert result.status == "ok", result.errors or result.problems
    return result.outputs["decode"]["image"]


def hand_loop(loaded, steps: int, size: int, device):
    """What a diffusers user writes by hand (docs: write_own_pipeline), CFG batched."""
    import torch
    from diffusers import EulerDiscreteScheduler
    from diffusers.utils.torch_utils import randn_tensor

    unet, vae = loaded.denoiser, loaded.vae
    text_encoder, tokenizer = loaded.modules["text_encoder"], loaded.tokenizers["tokenizer"]
    scheduler = EulerDiscreteScheduler.from_config(loaded.scheduler_config)
    with torch.inference_mode():
        ids = [
            tokenizer(t, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
            for t in ("", PROMPT)
        ]
        embeddings = torch.cat([text_encoder(i.to(device))[0] for i in ids])
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        generator = torch.Generator("cpu").manual_seed(SEED)
        shape = (1, unet.config.in_channels, size // factor, size // factor)
        scheduler.set_timesteps(steps, device=device)
        x = randn_tensor(shape, generator=generator, device=device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(torch.cat([x] * 2), t)
            uncond, cond = unet(x_in, t, encoder_hidden_states=embeddings).sample.chunk(2)
            x = scheduler.step(uncond + SCALE * (cond - uncond), t, x, generator=generator).prev_sample
        image = vae.decode(x / vae.config.scaling_factor).sample
        return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def pipeline_run(pipe, steps: int, size: int):
    import torch

    generator = torch.Generator("cpu").manual_seed(SEED)
    return pipe(
        PROMPT,
        negative_prompt="",
        num_inference_steps=steps,
        guidance_scale=SCALE,
        height=size,
        width=size,
        generator=generator,
        output_type="np",
    ).images


def compare(label: str, model_name: str, size: int, args) -> None:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from app.graph import serialize
    from app.registry import default_registry
    from app.runtime.device import torch_device
    from app.runtime.models import manager

    graph = serialize.load(
        Path(__file__).resolve().parents[1] / "graphs" / "txt2img.json", default_registry()
    )
    for node_id, param, value in [
        ("model", "checkpoint", model_name),
        ("prompt", "text", PROMPT),
        ("negative", "text", ""),
        ("latent", "width", size),
        ("latent", "height", size),
        ("schedule", "scheduler", "euler"),
        ("schedule", "steps", args.steps),
        ("guidance", "scale", SCALE),
        ("sampler", "seed", SEED),
    ]:
        graph.set_param(node_id, param, value)
    first = ours(graph, args.device)  # loads the model once; the others reuse the same modules
    device = torch_device(args.device)
    loaded = manager().load(manager().loaded()[-1], device)
    for part in ("unet", "text_encoder", "vae"):
        loaded.on(part, device)
    pipe = StableDiffusionPipeline(
        unet=loaded.denoiser,
        vae=loaded.vae,
        text_encoder=loaded.modules["text_encoder"],
        tokenizer=loaded.tokenizers["tokenizer"],
        scheduler=EulerDiscreteScheduler.from_config(loaded.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    candidates = {
        "nodeloom graph": lambda: ours(graph, args.device),
        "hand-written loop": lambda: hand_loop(loaded, args.steps, size, device),
        "StableDiffusionPipeline": lambda: pipeline_run(pipe, args.steps, size),
    }
    agree = max(
        abs(first - hand_loop(loaded, args.steps, size, device)).max(),
        abs(first - pipeline_run(pipe, args.steps, size)).max(),
    )
    times: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, run in candidates.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    base = statistics.median(times["hand-written loop"])
    base_cpu = statistics.median(cpu["hand-written loop"])
    params = sum(p.numel() for p in loaded.denoiser.parameters())
    print(
        f"\n{label}: UNet {params / 1e6:.2f} M params, {size}x{size}, {args.steps} steps euler, CFG {SCALE}, "
        f"{args.rounds} rounds, torch threads {torch.get_num_threads()}, device {device}"
    )
    print(f"  images agree to {agree:.1e} (max abs, 0..1 pixels)")
    print("  (wall = elapsed time; cpu = this process's CPU time, steadier when other jobs share the cores)")
    for name, values in times.items():
        median, median_cpu = statistics.median(values), statistics.median(cpu[name])
        print(
            f"  {name:<24} wall {median * 1000:8.1f} ms {median / base:6.3f}x ({(median - base) * 1000:+6.1f} ms)"
            f"   cpu {median_cpu * 1000:8.1f} ms {median_cpu / base_cpu:6.3f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 = steady on a shared box)"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    from tools.make_tiny_random_model import write

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        os.environ["NODELOOM_MODEL_ROOTS"] = root
        write(Path(root) / "tiny-bench-small")
        write(Path(root) / "tiny-bench-large", unet_channels=(32, 64, 128), layers=2)
        compare("tiny (diffusers test UNet)", "tiny-bench-small", 32, args)
        compare("larger UNet", "tiny-bench-large", 64, args)


if __name__ == "__main__":
    main()
