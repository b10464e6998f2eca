"""Step Cache node speed vs quality: DeepCache intervals 2/3/5 (uniform and non-uniform) beside the uncached loop.

Runs the Sampler's loop (DDIM, CFG as one batch of two, scale input -> denoise -> guidance -> step) once
uncached and once per cache policy, in one process, and prints per policy: wall time, speedup over the
uncached loop, skipped UNet blocks, and quality against the uncached result (PSNR and SSIM).

  (a) the embedded model (assets/models/tiny-shapes; falls back to assets/models/tiny-random-sd15) at its
      native size; quality on the VAE-decoded images (0..1 RGB). Also intervals 3 and 5 with the first
      2 steps uncached (the Step Cache node's default), PAB, and an adaptive plan.
  (b) a random-weight UNet with SD1.5's exact architecture (860 M params, no download) at 256x256; speed
      does not depend on weight values. Its VAE would be random too, so quality is measured on the final
      latents (PSNR with the uncached latents' range as peak; SSIM per channel after mapping that range to
      0..1). Target: interval 3 >= 2.0x on CPU.

Tests never assert on wall time; this prints numbers to read. On a shared machine, timings wobble, so all
loops advance in lockstep (one step of each in turn) with a second uncached loop as a control whose time
is printed to show the noise; (a) repeats that five times and keeps each loop's best. PAB hooks the model,
so it cannot share a lockstep: it runs in whole loops, each beside an uncached loop of its own.

Usage: python bench/cache_speed_quality.py [--steps-a 20] [--steps-b 10] [--size-b 256] [--only a|b]
       [--threads-a 1] [--threads-b 2] [--device-b cuda --dtype-b float16]
(the DeepCache paper's SD1.5 setting: --only b --device-b cuda --dtype-b float16 --steps-b 50 --size-b 512)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMScheduler, UNet2DConditionModel  # noqa: E402

import app  # noqa: E402,F401  (sets Hugging Face offline)
from app.runtime.step_cache import CachePolicy, DeepCache, NoCache, PyramidBroadcast, open_denoiser  # noqa: E402
from app.runtime.step_cache.adaptive import calibrate  # noqa: E402

SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=768,
    norm_num_groups=32,
    flip_sin_to_cos=True,
    freq_shift=0,
)
SD15_SCHEDULE = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
)
DEEPCACHE = [DeepCache(interval=n, schedule=s) for n in (2, 3, 5) for s in ("uniform", "non_uniform")]
# The Step Cache node's default keeps the first 2 steps uncached; on a trained model that matters most.
WITH_START = [DeepCache(interval=n, start=2) for n in (3, 5)]


def sample_steps(unet, policy: CachePolicy, latents, cond, uncond, steps: int, guidance: float = 5.0):
    """The Sampler's loop with a cache policy, as a generator that yields after every step.

    Returns (final latents, skipped blocks, total blocks) through StopIteration. Run it under no_grad.
    """
    ddim = DDIMScheduler(**SD15_SCHEDULE)
    ddim.set_timesteps(steps)
    text = torch.cat([uncond, cond])
    with open_denoiser(policy, unet, steps) as denoise:
        x = latents * ddim.init_noise_sigma
        for i, t in enumerate(ddim.timesteps):
            x_in = ddim.scale_model_input(torch.cat([x, x]), t)
            eps_uncond, eps_cond = denoise(i, x_in, t, text).chunk(2)
            x = ddim.step(eps_uncond + guidance * (eps_cond - eps_uncond), t, x).prev_sample
            yield
    return x, denoise.skipped_blocks, denoise.total_blocks


def sample_loop(unet, policy: CachePolicy, latents, cond, uncond, steps: int):
    """One whole loop; returns (final latents, seconds, skipped blocks, total blocks)."""
    started = time.perf_counter()
    with torch.no_grad():
        x, skipped, total = _finish(sample_steps(unet, policy, latents, cond, uncond, steps))
    return x, time.perf_counter() - started, skipped, total


def lockstep(unet, policies: list[CachePolicy], latents, cond, uncond, steps: int, sync=None) -> list[tuple]:
    """One loop per policy, advanced one step each in turn, so load from other processes hits all alike.

    Only for policies that leave the model alone while they run (DeepCache, none): PAB hooks the model.
    Returns per policy (final latents, seconds spent in its own steps, skipped blocks, total blocks).
    """
    loops = [sample_steps(unet, policy, latents, cond, uncond, steps) for policy in policies]
    seconds = [0.0] * len(loops)
    results: list = [None] * len(loops)
    with torch.no_grad():
        for _ in range(steps + 1):
            for k, loop in enumerate(loops):
                started = time.perf_counter()
                try:
                    next(loop)
                except StopIteration as done:
                    results[k] = done.value
                if sync is not None:  # a GPU runs ahead of the host: wait for this step before timing it
                    sync()
                seconds[k] += time.perf_counter() - started
    return [(x, seconds[k], skipped, total) for k, (x, skipped, total) in enumerate(results)]


def _finish(loop):
    while True:
        try:
            next(loop)
        except StopIteration as done:
            return done.value


def psnr(test: np.ndarray, reference: np.ndarray, peak: float) -> float:
    mse = float(np.mean((test.astype(np.float64) - reference) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def ssim(test: np.ndarray, reference: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian, sigma 1.5) of two HxWxC images in 0..1, over channels."""
    c1, c2 = 0.01**2, 0.03**2
    scores = []
    for ch in range(reference.shape[-1]):
        a, b = test[..., ch].astype(np.float64), reference[..., ch].astype(np.float64)

        def blur(img):
            return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))


def latent_quality(test: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    ref, out = (x[0].permute(1, 2, 0).float().cpu().numpy() for x in (reference, test))
    low, high = float(ref.min()), float(ref.max())
    scale = lambda v: np.clip((v - low) / (high - low), 0, 1)  # noqa: E731
    return psnr(out, ref, high - low), ssim(scale(out), scale(ref))


def image_quality(vae, test: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    def decode(latents):
        with torch.no_grad():
            image = vae.decode(latents / vae.config.scaling_factor).sample
        return ((image[0].permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy()

    out, ref = decode(test), decode(reference)
    return psnr(out, ref, 1.0), ssim(out, ref)


def report(title: str, rows: list[tuple], base: list[float], note: str = "") -> None:
    """Rows are (name, seconds, uncached seconds to compare with, skipped, total, (PSNR, SSIM)).

    base = (the uncached timing, a second uncached timing printed to show the noise)."""
    print(f"\n{title}")
    print(f"  uncached loop: {base[0]:.2f} s (second uncached loop, as a control: {base[1]:.2f} s)")
    print(f"  {'policy':<40}{'time s':>8}{'speedup':>9}{'skipped blocks':>17}{'PSNR dB':>9}{'SSIM':>8}")
    for name, seconds, reference, skipped, total, (p, s) in rows:
        print(
            f"  {name:<40}{seconds:>8.2f}{reference / seconds:>8.2f}x{skipped:>9}/{total:<7}"
            f"{p:>9.2f}{s:>8.4f}"
        )
    if note:
        print(f"  {note}")


def label(policy: CachePolicy) -> str:
    if isinstance(policy, DeepCache):
        start = f" start={policy.start}" if policy.start else ""
        return f"deepcache N={policy.interval} {policy.schedule} b={policy.branch}{start}"
    if isinstance(policy, PyramidBroadcast):
        return f"pab self={policy.self_interval} cross={policy.cross_interval}"
    return f"adaptive plan={list(policy.plan)}"


def bench_embedded(steps: int, repeats: int = 5) -> None:
    from diffusers import StableDiffusionPipeline

    folder = ROOT / "assets/models/tiny-shapes"
    note = ""
    if not (folder / "unet").is_dir():
        folder, note = (
            ROOT / "assets/models/tiny-random-sd15",
            " (tiny-shapes not trained yet: RANDOM weights)",
        )
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None)
    unet, vae = pipe.unet.eval(), pipe.vae.eval()
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt("a red circle on a blue background", "cpu", 1, True, "")
    size = unet.config.sample_size
    latents = torch.randn(1, unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(0))

    adaptive = calibrate_cfg(unet, latents, cond, uncond, steps, budget=math.ceil(steps / 3))
    together = [NoCache(), NoCache(), *DEEPCACHE, *WITH_START, adaptive]
    best: list = [None] * len(together)
    paired, pab_runs = [], []
    for _ in range(repeats):
        for k, run in enumerate(lockstep(unet, together, latents, cond, uncond, steps)):
            if best[k] is None or run[1] < best[k][1]:
                best[k] = run
        # PAB hooks the model, so it runs in whole loops, each beside an uncached loop of its own.
        paired.append(sample_loop(unet, NoCache(), latents, cond, uncond, steps)[1])
        pab_runs.append(sample_loop(unet, PyramidBroadcast(), latents, cond, uncond, steps))
    reference, before = best[0][0], best[0][1]
    rows = [
        (label(policy), seconds, before, skipped, total, image_quality(vae, out, reference))
        for policy, (out, seconds, skipped, total) in zip(together[2:], best[2:], strict=True)
    ]
    out, seconds, skipped, total = min(pab_runs, key=lambda run: run[1])
    quality = image_quality(vae, out, reference)
    rows.append((label(PyramidBroadcast()) + " *", seconds, min(paired), skipped, total, quality))
    report(
        f"(a) embedded model {folder.name}{note}: {size}x{size} latents, {steps} DDIM steps, CFG 5, "
        f"{torch.get_num_threads()} thread(s), best of {repeats} lockstep rounds; quality on decoded images",
        rows,
        [before, best[1][1]],
        f"* pab: whole loops beside paired uncached loops (best {min(paired):.2f} s); it skips attention only",
    )


def calibrate_cfg(unet, latents, cond, uncond, steps: int, budget: int, guidance: float = 5.0):
    """An adaptive plan from one uncached run of the same CFG loop (DDIM's scale_model_input is the identity)."""
    ddim = DDIMScheduler(**SD15_SCHEDULE)
    ddim.set_timesteps(steps)

    def step(prediction, t, pair):
        eps_uncond, eps_cond = prediction.chunk(2)
        x = ddim.step(eps_uncond + guidance * (eps_cond - eps_uncond), t, pair[:1]).prev_sample
        return torch.cat([x, x])

    start = latents * ddim.init_noise_sigma
    text = torch.cat([uncond, cond])
    return calibrate(unet, ddim.timesteps, torch.cat([start, start]), text, step=step, budget=budget)


def bench_sd15(steps: int, size: int, device: str = "cpu", dtype: str = "float32") -> None:
    torch.manual_seed(0)
    place = {"device": device, "dtype": getattr(torch, dtype)}
    unet = UNet2DConditionModel(**SD15_UNET).eval().to(**place)
    side = size // 8
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, side, side, generator=generator).to(**place)
    cond, uncond = torch.randn(2, 1, 77, 768, generator=generator).to(**place)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else None
    if sync is not None:  # warm up kernels and allocator before anything is timed
        lockstep(unet, [NoCache(), DeepCache(interval=3)], latents, cond, uncond, 3, sync)
    # Two uncached loops: the first is the reference, the second a control that shows the timing noise.
    runs = lockstep(unet, [NoCache(), NoCache(), *DEEPCACHE], latents, cond, uncond, steps, sync)
    (reference, before, _, _), (_, control, _, _) = runs[:2]
    rows = [
        (label(policy), seconds, before, skipped, total, latent_quality(out, reference))
        for policy, (out, seconds, skipped, total) in zip(DEEPCACHE, runs[2:], strict=True)
    ]
    report(
        f"(b) SD1.5-architecture UNet, random weights: {size}x{size} ({side}x{side} latents), {steps} DDIM "
        f"steps, CFG batch of 2, {device} {dtype}, {torch.get_num_threads()} CPU threads, all loops in "
        "lockstep (one step of each "
        "in turn); quality on final latents",
        rows,
        [before, control],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-a", type=int, default=20)
    parser.add_argument("--steps-b", type=int, default=10)
    parser.add_argument("--size-b", type=int, default=256)
    parser.add_argument("--only", choices=("a", "b"))
    parser.add_argument("--threads-a", type=int, default=1, help="tiny models only slow down with more")
    parser.add_argument("--threads-b", type=int, default=2)
    parser.add_argument("--device-b", default="cpu", help="cpu or cuda (the paper's setting is cuda)")
    parser.add_argument("--dtype-b", default="float32", choices=("float32", "float16", "bfloat16"))
    args = parser.parse_args(argv)
    gpu = torch.cuda.get_device_name() if args.device_b == "cuda" else "no GPU used"
    print(f"torch {torch.__version__}, {gpu}", flush=True)
    if args.only in (None, "a"):
        torch.set_num_threads(args.threads_a)
        bench_embedded(args.steps_a)
    if args.only in (None, "b"):
        torch.set_num_threads(args.threads_b)
        bench_sd15(args.steps_b, args.size_b, args.device_b, args.dtype_b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
