"""SD3 / SD3.5 and Flux.1 through the ordinary nodes: our graphs equal StableDiffusion3Pipeline and
FluxPipeline on tiny random models (several schedulers, dynamic shift, distilled guidance, true CFG, T5
left out, img2img), and what does not fit a flow model is refused with a sentence."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from app.engine.plan import validate
from app.graph.model import Edge, Node
from app.registry import default_registry
from app.runtime.schedulers import make_scheduler
from app.runtime.values import Schedule
from tests.nodes import diffusion_helpers as h
from tests.nodes import flow_helpers as f

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flow")
    with h.model_root(folder):
        f.write_models(folder)
        yield folder


def _ours(g, target="sampler"):
    result = h.run(h.executor(), g, target=target)
    return result.outputs[target]


def _swap(pipe, scheduler, steps, **schedule):
    pipe.scheduler = make_scheduler(Schedule(scheduler, steps, **schedule), pipe.scheduler.config, flow=True)


@pytest.mark.parametrize(
    ("model", "scheduler"),
    [
        (f.SD3, "euler"),
        (f.SD3, "dpmpp_2m"),
        (f.SD3, "unipc"),
        (f.SD3, "heun"),
        (f.SD35, "euler"),
    ],
)
def test_sd3_graph_equals_stable_diffusion_3_pipeline(root, model, scheduler):
    steps, scale, seed = 4, 5.0, 11
    g = f.graph(
        "sd3_txt2img",
        model,
        prompt__text=f.PROMPT,
        negative__text="blurry",
        schedule__scheduler=scheduler,
        schedule__steps=steps,
        guidance__scale=scale,
        sampler__seed=seed,
    )
    ours = _ours(g)["latent"].samples
    pipe = f.pipeline(root / model)
    _swap(pipe, scheduler, steps)
    reference = f.reference(pipe, steps, scale, seed, negative_prompt="blurry")
    assert ours.shape == reference.shape == (1, 16, f.SIZE // 8, f.SIZE // 8)
    assert (ours - reference).abs().max().item() < TOLERANCE


@pytest.mark.parametrize(
    ("model", "scheduler"), [(f.FLUX, "euler"), (f.FLUX, "dpmpp_2m"), (f.FLUX, "unipc"), (f.SCHNELL, "euler")]
)
def test_flux_graph_equals_flux_pipeline(root, model, scheduler):
    steps, scale, seed = 4, 3.5, 12
    g = f.graph(
        "flux_txt2img",
        model,
        prompt__text=f.PROMPT,
        schedule__scheduler=scheduler,
        schedule__steps=steps,
        guidance__scale=scale,
        sampler__seed=seed,
    )
    assert "negative" not in g.nodes
    ours = _ours(g)["latent"].samples
    pipe = f.pipeline(root / model)
    _swap(pipe, scheduler, steps)
    reference = f.reference(pipe, steps, scale, seed)
    assert (ours - reference).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("model", [f.SD3, f.FLUX])
def test_decoded_pictures_equal_the_pipelines(root, model):
    """VAE Decode undoes the 16-channel latent format ((z - shift) * scale) as the pipelines do."""
    name = "sd3_txt2img" if model == f.SD3 else "flux_txt2img"
    g = f.graph(name, model, prompt__text=f.PROMPT, schedule__steps=3, guidance__scale=4.0, sampler__seed=3)
    if model == f.SD3:
        g.set_param("negative", "text", "")
    picture = _ours(g, "decode")["image"]
    pipe = f.pipeline(root / model)
    reference = pipe(
        f.PROMPT,
        num_inference_steps=3,
        guidance_scale=4.0,
        height=f.SIZE,
        width=f.SIZE,
        generator=torch.Generator("cpu").manual_seed(3),
        output_type="np",
    ).images
    assert picture.shape == reference.shape == (1, f.SIZE, f.SIZE, 3)
    assert np.abs(picture - reference).max() < 1e-4


def test_dynamic_shift_follows_the_image_size_and_a_set_shift_replaces_it(root):
    """Flux dev's mu grows with the patch count: a larger image gets other timesteps; schedule.shift fixes it."""
    steps, seed = 3, 5
    for size in (64, 128):
        g = f.graph("flux_txt2img", f.FLUX, prompt__text=f.PROMPT, schedule__steps=steps, sampler__seed=seed)
        g.set_param("latent", "width", size)
        g.set_param("latent", "height", size)
        ours = _ours(g)["latent"].samples
        pipe = f.pipeline(root / f.FLUX)
        reference = pipe(
            f.PROMPT,
            num_inference_steps=steps,
            guidance_scale=3.5,
            height=size,
            width=size,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="latent",
        ).images
        reference = pipe._unpack_latents(reference, size, size, pipe.vae_scale_factor)
        assert (ours - reference).abs().max().item() < TOLERANCE, size
    g = f.graph(
        "flux_txt2img",
        f.FLUX,
        prompt__text=f.PROMPT,
        schedule__steps=steps,
        schedule__shift=2.0,
        sampler__seed=0,
    )
    ours = _ours(g)["latent"].samples
    pipe = f.pipeline(root / f.FLUX)
    _swap(pipe, "euler", steps, shift=2.0)
    assert not pipe.scheduler.config.use_dynamic_shifting and pipe.scheduler.config.shift == 2.0
    reference = f.reference(pipe, steps, 3.5, 0)
    assert (ours - reference).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("sigmas", ["karras", "exponential", "beta"])
def test_sigma_schedules_reach_the_flow_scheduler(root, sigmas):
    steps = 4
    g = f.graph(
        "sd3_txt2img",
        f.SD3,
        prompt__text=f.PROMPT,
        negative__text="",
        schedule__steps=steps,
        schedule__sigmas=sigmas,
        guidance__scale=5.0,
    )
    ours = _ours(g)["latent"].samples
    pipe = f.pipeline(root / f.SD3)
    _swap(pipe, "euler", steps, sigmas=sigmas)
    assert pipe.scheduler.config[f"use_{sigmas}_sigmas"]
    reference = f.reference(pipe, steps, 5.0, 0, negative_prompt="")
    assert (ours - reference).abs().max().item() < TOLERANCE


def test_flux_true_cfg_runs_the_negative_prompt_as_the_pipeline_does(root):
    g = f.graph("flux_txt2img", f.FLUX, prompt__text=f.PROMPT, schedule__steps=3, guidance__true_cfg=3.0)
    result = h.executor().run(g, ["sampler"])
    assert "connect a negative prompt" in result.errors["sampler"]
    g.add_node(Node("negative", "conditioning.text_encode", params={"text": "blurry", "clip_skip": 1}))
    g.connect(Edge("model", "clip", "negative", "clip"))
    g.connect(Edge("negative", "conditioning", "sampler", "negative"))
    ours = _ours(g)["latent"].samples
    pipe = f.pipeline(root / f.FLUX)
    reference = f.reference(pipe, 3, 3.5, 0, negative_prompt="blurry", true_cfg_scale=3.0)
    assert (ours - reference).abs().max().item() < TOLERANCE
    without = _ours(f.graph("flux_txt2img", f.FLUX, prompt__text=f.PROMPT, schedule__steps=3))[
        "latent"
    ].samples
    assert (without - ours).abs().max().item() > 1e-3


def test_sd3_without_t5_uses_zeros_as_the_pipeline_does(root):
    folder = root / "tiny-sd3-no-t5"
    shutil.copytree(root / f.SD3, folder, dirs_exist_ok=True)
    shutil.rmtree(folder / "text_encoder_3")
    index = (
        (folder / "model_index.json")
        .read_text()
        .replace('"T5EncoderModel"', "null")
        .replace('"transformers",\n    null', "null,\n    null")
    )
    (folder / "model_index.json").write_text(index)
    g = f.graph("sd3_txt2img", folder.name, prompt__text=f.PROMPT, negative__text="blurry", schedule__steps=3,
                guidance__scale=5.0)  # fmt: skip
    ours = _ours(g)["latent"].samples
    pipe = f.pipeline(root / f.SD3, text_encoder_3=None, tokenizer_3=None)
    reference = f.reference(pipe, 3, 5.0, 0, negative_prompt="blurry")
    assert (ours - reference).abs().max().item() < TOLERANCE


def test_sd3_img2img_equals_its_pipeline(root):
    """VAE Encode (shift and scale) then denoise 0.6: the flow scheduler's scale_noise start, as
    StableDiffusion3Img2ImgPipeline does from the same latents."""
    from diffusers import StableDiffusion3Img2ImgPipeline

    steps, denoise, seed = 5, 0.6, 21
    g = h.graph("img2img", prompt__text=f.PROMPT, negative__text="blurry")
    g.set_param("model", "checkpoint", f.SD3)
    for name, value in (("steps", steps), ("denoise", denoise)):
        g.set_param("schedule", name, value)
    g.set_param("sampler", "seed", seed)
    ours = _ours(g)["latent"].samples
    encoded = h.executor().run(g, ["encode"]).outputs["encode"]["latent"].samples
    assert encoded.shape[1] == 16
    pipe = StableDiffusion3Img2ImgPipeline(**f.pipeline(root / f.SD3).components)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(
        f.PROMPT,
        negative_prompt="blurry",
        image=encoded,
        strength=denoise,
        num_inference_steps=steps,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images
    assert (ours - reference).abs().max().item() < TOLERANCE
    assert (ours - encoded).abs().max().item() > 1e-3


def test_flow_models_refuse_what_does_not_fit_them(root):
    registry = default_registry()
    g = f.graph("flux_txt2img", f.FLUX, guidance__method="apg")
    problems = [str(p) for p in validate(g, registry)]
    assert any("node 'guidance'" in p and "takes only cfg" in p for p in problems), problems
    g = f.graph("sd3_txt2img", f.SD3, guidance__method="rcfg_self")
    problems = [str(p) for p in validate(g, registry)]
    assert any("predicts flow" in p for p in problems), problems
    g = f.graph("sd3_txt2img", f.SD3, schedule__scheduler="ddim", schedule__steps=2)
    result = h.executor().run(g, ["sampler"])
    assert "ddim has no flow-matching version" in result.errors["sampler"]
    g = f.graph("flux_txt2img", f.FLUX, latent__width=72, latent__height=64)
    result = h.executor().run(g, ["sampler"])
    assert "multiples of 16 pixels" in result.errors["sampler"]
