"""Inpainting (Set Latent Noise Mask + Sampler) against StableDiffusionInpaintPipeline, and the hires fix's
second pass against StableDiffusionImg2ImgPipeline on the upscaled latent; the mask node's own behaviour."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from app.engine.context import RunSettings
from app.engine.plan import validate
from app.graph.model import Edge, Node
from app.registry import default_registry
from app.runtime.schedulers import make_scheduler
from app.runtime.values import Latent, Schedule
from nodes import inpaint
from tests.nodes import diffusion_helpers as h

TOLERANCE = 1e-4
PROMPT = "a red circle on a blue background"


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(3)
    picture = (rng.random((h.SIZE, h.SIZE, 3)) * 255).astype(np.uint8)
    mask = np.zeros((h.SIZE, h.SIZE, 3), np.uint8)
    mask[4:20, 8:28] = 255  # white: repaint
    cv2.imwrite(str(tmp_path / "picture.png"), picture)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    return tmp_path / "picture.png", tmp_path / "mask.png", mask[..., 0] > 0


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "dpmpp_2m"])
def test_inpaint_matches_the_inpaint_pipeline_and_keeps_the_rest(model_path, pictures, scheduler):

    picture, mask_file, repaint = pictures
    steps, scale, seed = 6, 6.0, 99
    g = h.graph("inpaint", image__path=str(picture), mask__path=str(mask_file), prompt__text=PROMPT,
                schedule__scheduler=scheduler, schedule__steps=steps, guidance__scale=scale, sampler__seed=seed)  # fmt: skip
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    encoded = h.executor().run(g, ["encode"]).outputs["encode"]["latent"].samples
    # latents as they are (our VAE Encode takes the mean; the pipeline would sample); a 4-channel UNet does
    # not read masked_image_latents
    reference = _inpaint_pipeline(model_path, scheduler, steps, scale, seed, encoded, encoded, repaint)
    error = (ours - reference).abs().max().item()
    print(f"inpaint {scheduler}: max abs error {error:.2e}")
    assert error < TOLERANCE
    factor = h.SIZE // ours.shape[-1]
    kept = ~torch.from_numpy(repaint[::factor, ::factor])
    assert torch.equal(ours[..., kept], encoded[..., kept])  # outside the mask: the input, exactly
    assert (ours[..., ~kept] - encoded[..., ~kept]).abs().mean() > 0.1  # inside: repainted


def test_hires_second_pass_matches_img2img_on_the_upscaled_latent(model_path):
    steps, scale, seed, denoise = 6, 7.0, 43, 0.5
    g = h.graph("hires_fix", prompt__text=PROMPT, schedule__steps=4, schedule_hires__steps=steps,
                schedule_hires__denoise=denoise, schedule_hires__scheduler="dpmpp_2m", guidance__scale=scale,
                sampler_hires__seed=seed)  # fmt: skip
    result = h.run(h.executor(), g, target="sampler_hires")
    ours = result.outputs["sampler_hires"]["latent"].samples
    upscaled = h.executor().run(g, ["upscale"]).outputs["upscale"]["latent"].samples
    first = h.executor().run(g, ["sampler"]).outputs["sampler"]["latent"].samples
    expected = torch.nn.functional.interpolate(first, scale_factor=2, mode="bicubic")
    assert upscaled.shape[-1] == 2 * first.shape[-1] and torch.allclose(upscaled, expected, atol=1e-6)
    config = h.pipeline(model_path).scheduler.config
    pipe = h.pipeline(model_path, make_scheduler(Schedule("dpmpp_2m", steps), config), img2img=True)
    reference = pipe(PROMPT, image=upscaled, strength=denoise, negative_prompt="", num_inference_steps=steps,
                     guidance_scale=scale, generator=torch.Generator("cpu").manual_seed(seed),
                     output_type="latent").images  # fmt: skip
    error = (ours - reference).abs().max().item()
    print(f"hires second pass: max abs error {error:.2e}")
    assert error < TOLERANCE


CTX = SimpleNamespace(node_id="masked")


def _latent(size=8, batch=1):
    return Latent(torch.zeros(batch, 4, size, size), "sd15", 8)


def test_the_mask_node_binarizes_grows_feathers_inverts_and_resizes():
    picture = np.zeros((1, 64, 64, 3), np.float32)
    picture[:, 16:48, 16:48] = 0.8  # light grey: above half, repaint
    hard = inpaint.noise_mask(CTX, _latent(), picture, None, False, 0, 0)["latent"].mask
    assert hard.shape == (1, 1, 8, 8) and set(hard.unique().tolist()) == {0.0, 1.0}
    assert hard[0, 0, 2:6, 2:6].min() == 1 and hard[0, 0, :2].max() == 0
    grown = inpaint.noise_mask(CTX, _latent(), picture, None, False, 8, 0)["latent"].mask
    assert grown.sum() > hard.sum()
    soft = inpaint.noise_mask(CTX, _latent(), picture, None, False, 0, 8)["latent"].mask
    assert ((soft > 0) & (soft < 1)).any()  # a soft edge
    inverted = inpaint.noise_mask(CTX, _latent(), picture, None, True, 0, 0)["latent"].mask
    assert torch.equal(inverted, 1 - hard)
    alpha = np.ones((1, 64, 64), np.float32)
    alpha[:, :32] = 0.0  # Load Image's mask: transparent top half
    from_alpha = inpaint.noise_mask(CTX, _latent(), None, alpha, True, 0, 0)["latent"].mask
    assert from_alpha[0, 0, :4].min() == 1 and from_alpha[0, 0, 4:].max() == 0
    with pytest.raises(Exception, match="3 masks for a batch of 2"):
        inpaint.noise_mask(CTX, _latent(batch=2), np.zeros((3, 64, 64, 3), np.float32), None, False, 0, 0)


def test_the_mask_node_wants_exactly_one_mask():
    from app.graph import serialize

    registry = default_registry()
    g = serialize.load(h.ROOT / "graphs" / "inpaint.json", registry)
    assert not [p for p in validate(g, registry) if p.node == "masked"]
    g.disconnect(g.input_edge("masked", "mask_image"))
    problems = [p.message for p in validate(g, registry) if p.node == "masked"]
    assert problems == ["connect one mask: a picture to mask_image (white = repaint) or a MASK to mask"]


@pytest.fixture(scope="module")
def inpaint_model(tmp_path_factory):
    from tools.make_tiny_random_model import write

    folder = tmp_path_factory.mktemp("models")
    write(folder / "tiny-inpaint", seed=3, in_channels=9)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NODELOOM_MODEL_ROOTS", str(folder))
        yield folder / "tiny-inpaint"


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a"])
def test_a_nine_channel_inpainting_model_matches_its_pipeline(inpaint_model, pictures, scheduler):

    picture, mask_file, repaint = pictures
    steps, scale, seed = 5, 6.0, 21
    g = h.graph("inpaint", image__path=str(picture), mask__path=str(mask_file), prompt__text=PROMPT,
                schedule__scheduler=scheduler, schedule__steps=steps, guidance__scale=scale, sampler__seed=seed)  # fmt: skip
    g.set_param("model", "checkpoint", "tiny-inpaint")
    _encode_for_inpainting(g)
    result = h.executor().run(g, ["sampler", "encode"], RunSettings(device="cpu"))
    assert result.status == "ok", (result.errors, [str(p) for p in result.problems])
    ours, greyed = result.outputs["sampler"]["latent"].samples, result.outputs["encode"]["latent"].samples
    # the greyed picture's latents are what the UNet is given beside its noise (`image`: only its size is used)
    reference = _inpaint_pipeline(inpaint_model, scheduler, steps, scale, seed, greyed, greyed, repaint)
    error = (ours - reference).abs().max().item()
    print(f"9-channel inpaint {scheduler}: max abs error {error:.2e}")
    assert error < TOLERANCE


def _inpaint_pipeline(model, scheduler, steps, scale, seed, image, masked, repaint):
    """StableDiffusionInpaintPipeline's final latents on `model` at strength 1, with our scheduler."""
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    config = h.pipeline(model).scheduler.config
    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        model, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = make_scheduler(Schedule(scheduler, steps), config)
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        PROMPT,
        image=image,
        masked_image_latents=masked,
        mask_image=Image.fromarray(repaint.astype(np.uint8) * 255),
        negative_prompt="",
        height=h.SIZE,
        width=h.SIZE,
        strength=1.0,
        num_inference_steps=steps,
        guidance_scale=scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images


def _encode_for_inpainting(g):
    """The shipped inpaint graph with VAE Encode (for Inpainting) in place of VAE Encode + Set Latent Noise Mask."""
    g.remove_node("masked")
    g.remove_node("encode")
    g.add_node(Node("encode", "latent.vae_encode_inpaint", params={"invert": False, "grow": 0, "feather": 0}))
    for edge in (Edge("image", "image", "encode", "image"), Edge("model", "vae", "encode", "vae"),
                 Edge("mask", "image", "encode", "mask_image"), Edge("encode", "latent", "sampler", "latent")):  # fmt: skip
        g.connect(edge)


def test_vae_encode_for_inpainting_greys_the_region_and_a_plain_latent_is_refused_by_an_inpainting_model(
    inpaint_model, pictures
):
    picture, mask_file, repaint = pictures
    g = h.graph("inpaint", image__path=str(picture), mask__path=str(mask_file))
    g.set_param("model", "checkpoint", "tiny-inpaint")
    _encode_for_inpainting(g)
    g.set_param("encode", "grow", 2)
    outputs = h.executor().run(g, ["encode", "image"], RunSettings(device="cpu")).outputs
    mask = outputs["encode"]["latent"].mask
    factor = h.SIZE // mask.shape[-1]
    grown = cv2.dilate(repaint.astype(np.uint8), np.ones((5, 5), np.uint8))[::factor, ::factor]
    assert torch.equal(mask[0, 0], torch.from_numpy(grown.astype(np.float32)))
    plain = h.graph("inpaint", image__path=str(picture), mask__path=str(mask_file))
    plain.set_param("model", "checkpoint", "tiny-inpaint")
    plain.disconnect(plain.input_edge("sampler", "latent"))
    plain.connect(Edge("encode", "latent", "sampler", "latent"))
    result = h.executor().run(plain, ["sampler"], RunSettings(device="cpu"))
    assert result.status == "error" and "this is an inpainting model: give its latent a mask" in str(
        result.errors
    )
