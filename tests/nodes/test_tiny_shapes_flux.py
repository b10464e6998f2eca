"""The embedded tiny-shapes-flux (a FLUX.1-dev-architecture model distilled here from tiny-shapes-sd3): its folder
loads unchanged in FluxPipeline, the shipped Flux graph equals that pipeline on it, and through the graph it
draws what it is told (judged by the eval's pixel heuristics on prompts and seeds training never drew)."""

from __future__ import annotations

import numpy as np
import torch

from tests.nodes import diffusion_helpers as h
from tools.eval_tiny_shapes import GraphRenderer, eval_pairs, judge, score
from tools.tiny_shapes_data import Sample

MODEL = h.ROOT / "assets" / "models" / "tiny-shapes-flux"


def test_the_folder_loads_in_flux_pipeline_and_the_graph_equals_it():
    from diffusers import FluxPipeline

    torch.set_num_threads(1)
    pipe = FluxPipeline.from_pretrained(MODEL, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.config.guidance_embeds  # distilled guidance, as FLUX.1 dev
    renderer = GraphRenderer(h.ROOT / "graphs" / "flux_txt2img.json", "tiny-shapes-flux")
    sample, seed = Sample("red", "circle", "blue"), 5
    image = pipe(sample.caption, num_inference_steps=20, height=64, width=64, guidance_scale=3.5,
                 generator=torch.Generator().manual_seed(seed), output_type="np").images[0]  # fmt: skip
    [ours] = renderer.render([(sample, seed)], steps=20, guidance=3.5)
    expected = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    assert judge(expected).background == "blue"


def test_the_shipped_flux_graph_follows_its_prompts():
    renderer = GraphRenderer(h.ROOT / "graphs" / "flux_txt2img.json", "tiny-shapes-flux")
    words = renderer.defaults["prompt"].split()
    [image] = renderer.render([(Sample(words[1], words[2], words[5]), renderer.defaults["seed"])])
    seen = judge(image)
    assert (seen.found, seen.colour, seen.shape, seen.background) == (True, words[1], words[2], words[5])
    pairs = eval_pairs(8, seed=31_000)
    marks = score(renderer.render(pairs), pairs)
    assert marks["background"] == 1.0 and marks["colour"] >= 7 / 8
