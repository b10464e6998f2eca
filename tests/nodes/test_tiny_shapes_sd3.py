"""The embedded tiny-shapes-sd3 (an SD3-architecture model trained here): its folder loads unchanged in
StableDiffusion3Pipeline, and through the shipped graph it draws what it is told (judged by the eval's pixel
heuristics on prompts and seeds training never drew)."""

from __future__ import annotations

import torch

from tests.nodes import diffusion_helpers as h
from tools.eval_tiny_shapes import GraphRenderer, eval_pairs, judge, score
from tools.tiny_shapes_data import Sample

MODEL = h.ROOT / "assets" / "models" / "tiny-shapes-sd3"


def test_the_folder_loads_in_the_sd3_pipeline_and_draws():
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(MODEL, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle on a blue background", num_inference_steps=20, height=64, width=64,
                 guidance_scale=5.0, generator=torch.Generator().manual_seed(3), output_type="np").images[0]  # fmt: skip
    assert judge((image * 255).round().astype("uint8")).background == "blue"


def test_the_shipped_sd3_graph_follows_its_prompts():
    renderer = GraphRenderer(h.ROOT / "graphs" / "sd3_txt2img.json", "tiny-shapes-sd3")
    assert renderer.defaults["prompt"] == "a yellow triangle on a blue background"
    [image] = renderer.render([(Sample("yellow", "triangle", "blue"), renderer.defaults["seed"])])
    seen = judge(image)
    assert (seen.found, seen.colour, seen.background) == (True, "yellow", "blue")
    pairs = eval_pairs(8, seed=30_000)
    marks = score(renderer.render(pairs), pairs)
    assert marks["background"] == 1.0 and marks["colour"] >= 7 / 8
