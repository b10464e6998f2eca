"""ControlNet oracle tests: Load/Apply ControlNet + Sampler equal StableDiffusionControlNetPipeline (single,
multi, start/end windows, guess mode) on the tiny random model; strength 0 is exactly no ControlNet; an SDXL
ControlNet is refused on an SD1.5-family model at validation; DeepCache composes with the residuals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.engine.plan import validate
from app.graph.model import Edge, Node
from app.registry import default_registry
from app.runtime.schedulers import make_scheduler
from app.runtime.values import Schedule
from tests.nodes import diffusion_helpers as h
from tools.make_tiny_random_controlnet import write as write_controlnet

TOLERANCE = 1e-4
PROMPT = "a red circle on a blue background"
STEPS, SCALE, SEED = 6, 7.5, 1234


@pytest.fixture(scope="module")
def nets(model_path):
    folder = model_path.parent / "controlnet"
    return [write_controlnet(folder / f"tiny-oracle-canny-{i}", model_path, seed=i) for i in range(2)]


def _graph(name="controlnet_canny", scheduler="ddim", **params):
    defaults = {"prompt__text": PROMPT, "negative__text": "", "schedule__scheduler": scheduler}
    defaults |= {"schedule__steps": STEPS, "guidance__scale": SCALE, "sampler__seed": SEED}
    g = h.graph(name, **(defaults | params))
    if "canny" in g.nodes:
        g.set_param("controlnet", "controlnet", "tiny-oracle-canny-0")
        g.set_param("canny", "width", h.SIZE)
        g.set_param("canny", "height", h.SIZE)
        g.set_param("canny", "low", 50)
    return g


def _ours(g):
    result = h.run(h.executor(), g)
    control = h.executor().run(g, ["canny"]).outputs["canny"]["image"]
    return result.outputs["sampler"]["latent"].samples, torch.from_numpy(control).permute(0, 3, 1, 2)


def _pipeline(model_path, folders, scheduler="ddim"):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    loaded = [ControlNetModel.from_pretrained(f, local_files_only=True) for f in folders]
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        model_path,
        controlnet=loaded if len(loaded) > 1 else loaded[0],
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = make_scheduler(Schedule(scheduler, STEPS), pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference(pipe, image, **kwargs):
    return pipe(
        PROMPT,
        image=image,
        negative_prompt="",
        num_inference_steps=STEPS,
        guidance_scale=SCALE,
        height=h.SIZE,
        width=h.SIZE,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="latent",
        **kwargs,
    ).images


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a"])
def test_apply_controlnet_matches_controlnet_pipeline(model_path, nets, scheduler):
    ours, image = _ours(_graph(scheduler=scheduler, apply__strength=0.8))
    assert image.shape == (1, 3, h.SIZE, h.SIZE) and image.max() == 1.0  # the canny edges are not empty
    reference = _reference(
        _pipeline(model_path, nets[:1], scheduler), image, controlnet_conditioning_scale=0.8
    )
    error = (ours - reference).abs().max().item()
    print(f"controlnet {scheduler}: max abs error {error:.2e}")
    assert error < TOLERANCE
    plain = h.run(h.executor(), _graph("txt2img", scheduler=scheduler)).outputs["sampler"]["latent"].samples
    assert (ours - plain).abs().max().item() > 100 * TOLERANCE  # the ControlNet changed the result


@pytest.mark.parametrize(("start", "end"), [(0.0, 0.5), (0.34, 1.0)])
def test_start_end_window_matches_control_guidance_start_end(model_path, nets, start, end):
    ours, image = _ours(_graph(apply__start=start, apply__end=end))
    reference = _reference(
        _pipeline(model_path, nets[:1]), image, control_guidance_start=start, control_guidance_end=end
    )
    full, _ = _ours(_graph())
    assert (ours - reference).abs().max().item() < TOLERANCE
    assert (ours - full).abs().max().item() > 100 * TOLERANCE


def test_guess_mode_matches_pipeline_guess_mode(model_path, nets):
    ours, image = _ours(_graph(apply__guess_mode=True))
    reference = _reference(_pipeline(model_path, nets[:1]), image, guess_mode=True)
    error = (ours - reference).abs().max().item()
    print(f"guess mode: max abs error {error:.2e}")
    assert error < TOLERANCE


def test_strength_zero_is_exactly_no_controlnet(model_path, nets):
    ours, _ = _ours(_graph(apply__strength=0.0))
    plain = h.run(h.executor(), _graph("txt2img")).outputs["sampler"]["latent"].samples
    assert torch.equal(ours, plain)


def _chain_second(g, strength):
    """A second Load + Apply ControlNet after the first (multi-ControlNet), on the same control image."""
    g.add_node(Node("controlnet2", "control.load", params={"controlnet": "tiny-oracle-canny-1"}))
    g.add_node(Node("apply2", "control.apply", params={"strength": strength}))
    g.disconnect(g.input_edge("sampler", "positive"))
    for edge in [
        Edge("apply", "conditioning", "apply2", "conditioning"),
        Edge("controlnet2", "control_net", "apply2", "control_net"),
        Edge("canny", "image", "apply2", "image"),
        Edge("apply2", "conditioning", "sampler", "positive"),
    ]:
        g.connect(edge)
    return g


def test_two_chained_controlnets_match_multi_controlnet(model_path, nets):
    ours, image = _ours(_chain_second(_graph(apply__strength=1.0), 0.7))
    pipe = _pipeline(model_path, nets)
    reference = _reference(pipe, [image, image], controlnet_conditioning_scale=[1.0, 0.7])
    error = (ours - reference).abs().max().item()
    print(f"multi-controlnet: max abs error {error:.2e}")
    assert error < TOLERANCE


def test_only_the_prompt_changed_reuses_the_control_image(model_path, nets):
    executor = h.executor()
    h.run(executor, _graph())
    result = h.run(executor, _graph(prompt__text="a green square"))
    assert {"canny", "controlnet"} <= set(result.cached) and "control_image" not in result.ran
    assert {"prompt", "apply", "sampler"} <= set(result.ran)


def test_sdxl_controlnet_on_sd15_family_model_is_refused(model_path, nets):
    folder = model_path.parent / "controlnet" / "sdxl-canny"
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "ControlNetModel", "block_out_channels": [320, 640, 1280]}
    config |= {"addition_embed_type": "text_time", "cross_attention_dim": 2048}
    (folder / "config.json").write_text(json.dumps(config), "utf-8")
    g = _graph()
    g.set_param("controlnet", "controlnet", "sdxl-canny")
    problems = [str(p) for p in validate(g, default_registry())]
    assert any("sdxl" in p and "tiny-oracle" in p for p in problems), problems


def test_deepcache_interval_one_with_controlnet_equals_controlnet_alone(model_path, nets):
    alone, _ = _ours(_graph())
    g = _graph()
    g.add_node(Node("cache", "sampling.cache", params={"strategy": "deepcache", "interval": 1}))
    g.disconnect(g.input_edge("sampler", "model"))
    g.connect(Edge("model", "model", "cache", "model"))
    g.connect(Edge("cache", "model", "sampler", "model"))
    cached = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    assert torch.equal(cached, alone)
    g.set_param("cache", "interval", 3)
    g.set_param("cache", "start", 0)
    skipping = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    assert np.isfinite(skipping.numpy()).all() and not torch.equal(skipping, alone)
