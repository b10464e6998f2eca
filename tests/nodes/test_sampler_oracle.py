"""Oracle tests: our graph's latents equal diffusers' pipelines for the same components, seed and settings."""

from __future__ import annotations

import pytest
import torch

from app.runtime.schedulers import make_scheduler
from app.runtime.values import Schedule
from tests.nodes import diffusion_helpers as h

TOLERANCE = 1e-4
PROMPT = "a red circle on a blue background"


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "dpmpp_2m"])
def test_txt2img_latent_matches_stable_diffusion_pipeline(model_path, scheduler):
    steps, scale, seed = 6, 7.5, 1234
    g = h.graph(
        prompt__text=PROMPT,
        negative__text="",
        schedule__scheduler=scheduler,
        schedule__steps=steps,
        guidance__scale=scale,
        sampler__seed=seed,
    )
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    config = h.pipeline(model_path, None).scheduler.config
    pipe = h.pipeline(model_path, make_scheduler(Schedule(scheduler, steps), config))
    reference = pipe(
        PROMPT,
        negative_prompt="",
        num_inference_steps=steps,
        guidance_scale=scale,
        height=h.SIZE,
        width=h.SIZE,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images
    assert ours.shape == reference.shape == (1, 4, h.SIZE // 2, h.SIZE // 2)
    error = (ours - reference).abs().max().item()
    print(f"{scheduler}: max abs error {error:.2e}")
    assert error < TOLERANCE


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "dpmpp_2m"])
def test_img2img_latent_matches_img2img_pipeline(model_path, scheduler):
    steps, scale, seed, denoise = 8, 5.0, 77, 0.6
    g = h.graph(
        "img2img",
        prompt__text=PROMPT,
        schedule__scheduler=scheduler,
        schedule__steps=steps,
        schedule__denoise=denoise,
        guidance__scale=scale,
        sampler__seed=seed,
    )
    result = h.run(h.executor(), g)
    ours = result.outputs["sampler"]["latent"].samples
    encoded = h.executor().run(g, ["encode"]).outputs["encode"]["latent"].samples
    config = h.pipeline(model_path, None).scheduler.config
    pipe = h.pipeline(model_path, make_scheduler(Schedule(scheduler, steps), config), img2img=True)
    # the pipeline's own preprocessing + VAE mean must equal our VAE Encode
    from app.images import read

    image, _ = read(str(h.ROOT / "assets" / "examples" / "shape.png"))
    pixels = pipe.image_processor.preprocess(torch.from_numpy(image).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor
    assert (encoded - expected).abs().max().item() < TOLERANCE
    reference = pipe(
        PROMPT,
        image=encoded,  # 4-channel input = latents as they are, so the generator only makes noise
        strength=denoise,
        negative_prompt="",
        num_inference_steps=steps,
        guidance_scale=scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images
    error = (ours - reference).abs().max().item()
    print(f"img2img {scheduler}: max abs error {error:.2e}")
    assert error < TOLERANCE
    assert (ours - encoded).abs().max().item() > 1e-2  # the sampler really changed the input


def test_different_seeds_give_different_latents(model_path):
    first = (
        h.run(h.executor(), h.graph(schedule__steps=2, sampler__seed=1)).outputs["sampler"]["latent"].samples
    )
    second = (
        h.run(h.executor(), h.graph(schedule__steps=2, sampler__seed=2)).outputs["sampler"]["latent"].samples
    )
    assert (first - second).abs().max().item() > 1e-3


def test_batch_uses_one_generator_like_the_pipeline(model_path):
    steps, seed = 4, 31
    g = h.graph(
        prompt__text=PROMPT,
        latent__batch=2,
        schedule__scheduler="euler_a",
        schedule__steps=steps,
        sampler__seed=seed,
    )
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    config = h.pipeline(model_path).scheduler.config
    pipe = h.pipeline(model_path, make_scheduler(Schedule("euler_a", steps), config))
    reference = pipe(
        PROMPT,
        num_images_per_prompt=2,
        num_inference_steps=steps,
        guidance_scale=7.5,
        height=h.SIZE,
        width=h.SIZE,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images
    assert ours.shape[0] == 2
    assert (ours - reference).abs().max().item() < TOLERANCE
    assert (ours[0] - ours[1]).abs().max().item() > 1e-3


def test_tiled_decode_matches_diffusers_vae_tiling(model_path):
    g = h.graph(schedule__steps=2, decode__tiled=True, latent__width=64, latent__height=64)
    result = h.run(h.executor(), g, target="decode")
    tiled = result.outputs["decode"]["image"]
    latents = h.executor().run(g, ["sampler"]).outputs["sampler"]["latent"].samples
    vae = h.pipeline(model_path).vae
    vae.enable_tiling()
    with torch.no_grad():
        expected = (vae.decode(latents / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    assert abs(tiled - expected.permute(0, 2, 3, 1).numpy()).max() < TOLERANCE
    plain = h.run(
        h.executor(), h.graph(schedule__steps=2, latent__width=64, latent__height=64), target="decode"
    )
    assert abs(plain.outputs["decode"]["image"] - tiled).max() > 1e-3  # 32x32 latents: really tiled


def test_a_slow_step_reports_progress_within_itself_and_leaves_no_hooks(model_path, monkeypatch):
    from app.runtime import sampling
    from app.runtime.models import manager

    monkeypatch.setattr(sampling, "SUBSTEP_SECONDS", 0.0)  # every step counts as slow
    monkeypatch.setattr(sampling._StepClock, "tick", _unthrottled(sampling._StepClock.tick))
    events: list[dict] = []
    h.run(h.executor(), h.graph("txt2img", schedule__steps=3), events=events)
    steps = [e["step"] for e in events if e.get("event") == "progress" and e.get("node") == "sampler"]
    within = [s for s in steps if s != int(s)]
    assert within and all(0 < s < 3 for s in within)
    assert steps == sorted(steps) and steps[-1] == 3
    for source in manager().loaded():
        unet = manager().load(source, torch.device("cpu")).denoiser
        assert not any(m._forward_hooks for m in unet.modules())


def _unthrottled(tick):
    def run(self, *args):
        self.shown = 0.0  # the 4-a-second limit would hide ticks on a tiny model
        return tick(self, *args)

    return run
