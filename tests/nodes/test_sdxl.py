"""SDXL base and refiner: our graphs equal diffusers' SDXL pipelines on tiny models (folders and single
files), detection reads full-size headers, and the existing nodes (img2img, size conditioning, Cache,
guidance, previews, ControlNet) work on the SDXL UNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.plan import validate
from app.registry import default_registry
from app.runtime import checkpoints
from app.runtime.schedulers import make_scheduler
from app.runtime.values import Schedule
from tests.nodes import diffusion_helpers as h
from tests.nodes import sdxl_helpers as xl

TOLERANCE = 1e-4
PROMPT = (
    "a photo of an astronaut riding a horse, wow!"  # "!" is CLIP-G's pad token: tokenized as diffusers does
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xl")
    with h.model_root(folder):
        xl.write_models(folder)
        yield folder


def _pipeline_latents(pipe, steps, scale, seed, **kwargs):
    return pipe(
        PROMPT,
        negative_prompt="blurry",
        num_inference_steps=steps,
        guidance_scale=scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
        **kwargs,
    ).images


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m"])
def test_sdxl_graph_equals_stable_diffusion_xl_pipeline(root, scheduler):
    steps, scale, seed = 5, 6.0, 77
    g = xl.graph(
        prompt__text=PROMPT,
        negative__text="blurry",
        schedule__scheduler=scheduler,
        schedule__steps=steps,
        guidance__scale=scale,
        sampler__seed=seed,
    )
    result = h.run(h.executor(), g, target="decode")
    pipe = xl.pipeline(root / xl.BASE)
    pipe.scheduler = make_scheduler(Schedule(scheduler, steps), pipe.scheduler.config)
    reference = _pipeline_latents(pipe, steps, scale, seed, height=h.SIZE, width=h.SIZE)
    ours = h.executor().run(g, ["sampler"]).outputs["sampler"]["latent"].samples
    assert ours.shape == reference.shape == (1, 4, h.SIZE // 2, h.SIZE // 2)
    assert (ours - reference).abs().max().item() < TOLERANCE
    pipe.scheduler = make_scheduler(Schedule(scheduler, steps), pipe.scheduler.config)
    picture = pipe(
        PROMPT,
        negative_prompt="blurry",
        num_inference_steps=steps,
        guidance_scale=scale,
        height=h.SIZE,
        width=h.SIZE,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images
    assert np.abs(result.outputs["decode"]["image"] - picture).max() < TOLERANCE


def test_single_file_loads_offline_with_shipped_tokenizers_and_equals_its_folder(root):
    from app.runtime.models import manager
    from app.runtime.values import CheckpointSource

    single = root / "checkpoints" / xl.SINGLE
    assert checkpoints.detect_layout(single) == "sdxl"
    skeleton = root / "configs" / xl.SKELETON
    assert not (skeleton / "tokenizer").exists() and not (skeleton / "tokenizer_2").exists()
    loaded = manager().load(CheckpointSource(str(single), "single", str(skeleton)), torch.device("cpu"))
    reference = xl.pipeline(root / xl.BASE)
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = loaded.modules[part].state_dict(), getattr(reference, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        assert all(torch.equal(ours[k], theirs[k].reshape(ours[k].shape)) for k in ours), part
    settings = dict(schedule__steps=3, sampler__seed=5)
    from_folder = h.run(h.executor(), xl.graph(**settings), target="decode").outputs["decode"]["image"]
    g = xl.graph(checkpoint=xl.SINGLE, **settings, model__config=xl.SKELETON)
    from_file = h.run(h.executor(), g, target="decode").outputs["decode"]["image"]
    # equal weights; the last bits of a matmul may differ with the tensors' memory alignment (mmap'd folder)
    assert np.abs(from_file - from_folder).max() < 1e-5


@pytest.mark.parametrize(("skeleton", "family"), [("sdxl", "sdxl"), ("sdxl_refiner", "sdxl_refiner")])
def test_auto_detects_full_size_sdxl_files_from_their_header(root, tmp_path, skeleton, family):
    stripped = xl.write_stripped(root / "checkpoints" / f"stripped-{skeleton}.safetensors", skeleton)
    assert checkpoints.detect_layout(stripped) == family
    assert checkpoints.family_of(stripped) == family
    assert checkpoints.find_skeleton(stripped, "auto") == checkpoints.SHIPPED_CONFIGS / skeleton
    g = xl.graph(checkpoint=stripped.name)
    if family == "sdxl":  # the whole graph validates: the shipped skeleton and tokenizers are enough
        assert [str(p) for p in validate(g, default_registry())] == []


def test_size_conditioning_equals_the_pipelines_original_size_and_crop(root):
    from app.graph.model import Edge, Node

    steps, seed = 3, 9
    g = xl.graph(prompt__text=PROMPT, negative__text="blurry", schedule__steps=steps, guidance__scale=5.0)
    g.set_param("sampler", "seed", seed)
    size = {
        "width": 512,
        "height": 384,
        "crop_left": 8,
        "crop_top": 16,
        "target_width": 64,
        "target_height": 48,
    }
    g.add_node(Node("size", "conditioning.size", params=size))
    g.disconnect(g.input_edge("sampler", "positive"))
    g.connect(Edge("prompt", "conditioning", "size", "conditioning"))
    g.connect(Edge("size", "conditioning", "sampler", "positive"))
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    plain = h.run(h.executor(), xl.graph(prompt__text=PROMPT, negative__text="blurry", schedule__steps=steps))
    reference = _pipeline_latents(
        xl.pipeline(root / xl.BASE),
        steps,
        5.0,
        seed,
        height=h.SIZE,
        width=h.SIZE,
        original_size=(384, 512),
        crops_coords_top_left=(16, 8),
        target_size=(48, 64),
    )
    assert (ours - reference).abs().max().item() < TOLERANCE
    assert (ours - plain.outputs["sampler"]["latent"].samples).abs().max().item() > 1e-4


def test_img2img_on_the_refiner_equals_its_pipeline(root):
    steps, denoise, seed = 6, 0.5, 21
    g = xl.graph(
        "img2img",
        checkpoint=xl.REFINER,
        prompt__text=PROMPT,
        negative__text="blurry",
        schedule__steps=steps,
        schedule__denoise=denoise,
        sampler__seed=seed,
    )
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    encoded = h.executor().run(g, ["encode"]).outputs["encode"]["latent"].samples
    reference = _pipeline_latents(
        xl.pipeline(root / xl.REFINER), steps, 7.5, seed, image=encoded, strength=denoise
    )
    assert (ours - reference).abs().max().item() < TOLERANCE
    assert (ours - encoded).abs().max().item() > 1e-3


def test_base_latents_feed_the_refiner_but_base_prompts_do_not(root):
    from app.graph.model import Edge, Node

    base = xl.write_stripped(root / "checkpoints" / "stripped-base.safetensors", "sdxl")
    refiner = xl.write_stripped(root / "checkpoints" / "stripped-refiner.safetensors", "sdxl_refiner")
    registry = default_registry()
    g = xl.graph(checkpoint=base.name, prompt__text=PROMPT)
    g.add_node(Node("refiner", "model.checkpoint", params={"checkpoint": refiner.name}))
    for name in ("sampler", "guidance"):
        g.disconnect(g.input_edge(name, "model"))
        g.connect(Edge("refiner", "model", name, "model"))
    problems = [str(p) for p in validate(g, registry)]  # base prompts into the refiner: refused
    assert len(problems) == 1 and "model families differ: sdxl, sdxl_refiner" in problems[0]
    for name in ("prompt", "negative"):
        g.disconnect(g.input_edge(name, "clip"))
        g.connect(Edge("refiner", "clip", name, "clip"))
    assert validate(g, registry) == []  # the base VAE's empty latent and its decode serve the refiner
    assert g.input_edge("latent", "vae").src == "model" and g.input_edge("decode", "vae").src == "model"
    g.set_param("model", "checkpoint", h.MODEL)  # an SD1.x VAE's latents into the refiner: refused
    problems = [str(p) for p in validate(g, registry)]
    assert any("latent spaces differ" in p for p in problems)


def test_deepcache_runs_on_the_sdxl_unet_and_equals_it_in_full(root):
    from app.runtime.step_cache.deepcache import UNetWalk

    pipe = xl.pipeline(root / xl.BASE)
    unet = pipe.unet
    torch.manual_seed(0)
    sample, text = torch.randn(2, 4, 8, 8), torch.randn(2, 77, unet.config.cross_attention_dim)
    added = {
        "text_embeds": torch.randn(2, 40),
        "time_ids": torch.tensor([[32, 32, 0, 0, 32, 32]] * 2).float(),
    }
    with torch.no_grad():
        expected = unet(sample, 500, text, added_cond_kwargs=added).sample
        ours, _ = UNetWalk(unet).full(0, sample, 500, text, added_cond_kwargs=added)
    assert torch.equal(ours, expected)
    events = []
    g = xl.graph("txt2img_deepcache", schedule__steps=6)
    h.run(h.executor(), g, events=events)
    finished = next(e for e in events if e["event"] == "finished" and e["node"] == "sampler")
    assert finished["skipped_blocks"] > 0


@pytest.mark.parametrize("method", ["cfg", "pag", "apg", "cfg_zero_star"])
def test_guidance_methods_drive_the_sdxl_unet_with_its_added_inputs(root, method):
    from app.runtime.models import manager

    steps = 10
    g = xl.graph(schedule__steps=steps, guidance__method=method)
    executor = h.executor()
    h.run(executor, g, target="model")
    loaded = manager().load(manager().loaded()[-1], torch.device("cpu"))
    seen = []

    def record(module, args, kwargs, out):
        added = kwargs["added_cond_kwargs"]
        seen.append((args[0].shape[0], added["text_embeds"].shape[0], added["time_ids"].shape[0]))

    handle = loaded.denoiser.register_forward_hook(record, with_kwargs=True)
    events = []
    try:
        latent = h.run(executor, g, events=events).outputs["sampler"]["latent"].samples
    finally:
        handle.remove()
    items = sum(items for items, _, _ in seen)  # one batch item per pass
    # PAG adds a perturbed pass inside its window (diffusers' default: 1% .. 20% of the steps)
    assert items > 2 * steps if method == "pag" else items == 2 * steps
    assert all(items == embeds == ids for items, embeds, ids in seen)  # every pass got its own added inputs
    assert torch.isfinite(latent).all() and any(e["event"] == "preview" for e in events)


def test_fp16_loads_keep_the_sdxl_vae_in_fp32(root):
    from app.runtime.device import FP16
    from app.runtime.models import _read, manager
    from app.runtime.values import CheckpointSource

    loaded = _read(CheckpointSource(str(root / xl.BASE), "fp16"), FP16, manager())
    assert loaded.denoiser.dtype == loaded.modules["text_encoder_2"].dtype == torch.float16
    assert loaded.vae.dtype == torch.float32


def test_sdxl_controlnet_equals_stable_diffusion_xl_controlnet_pipeline(root):
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    from app.runtime import tokenizers
    from tools.make_tiny_random_controlnet import write as write_controlnet

    folder = write_controlnet(root / "controlnet" / "tiny-xl-canny", root / xl.BASE, seed=4)
    steps, scale, seed = 4, 6.0, 8
    g = xl.graph("controlnet_canny", prompt__text=PROMPT, negative__text="", schedule__steps=steps)
    for node, param, value in [
        ("schedule", "scheduler", "euler"),
        ("guidance", "scale", scale),
        ("sampler", "seed", seed),
        ("controlnet", "controlnet", folder.name),
        ("canny", "width", h.SIZE),
        ("canny", "height", h.SIZE),
        ("apply", "strength", 0.8),
    ]:
        g.set_param(node, param, value)
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    control = torch.from_numpy(h.executor().run(g, ["canny"]).outputs["canny"]["image"]).permute(0, 3, 1, 2)
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        root / xl.BASE,
        controlnet=ControlNetModel.from_pretrained(folder, local_files_only=True),
        tokenizer=tokenizers.clip(),
        tokenizer_2=tokenizers.clip("!"),
        local_files_only=True,
    )
    pipe.scheduler = make_scheduler(Schedule("euler", steps), pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(
        PROMPT,
        image=control,
        negative_prompt="",
        num_inference_steps=steps,
        guidance_scale=scale,
        controlnet_conditioning_scale=0.8,
        height=h.SIZE,
        width=h.SIZE,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images
    assert (ours - reference).abs().max().item() < TOLERANCE
    plain = h.run(h.executor(), xl.graph(prompt__text=PROMPT, negative__text="", schedule__steps=steps))
    assert (ours - plain.outputs["sampler"]["latent"].samples).abs().max().item() > 1e-3
