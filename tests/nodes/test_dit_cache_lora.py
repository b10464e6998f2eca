"""The DiT Step Cache strategies compose with a LoRA on SD3 and Flux, in either order on the model line: set to
cache nothing they equal the LoRA run exactly; caching, both patches apply (LoRA layers and skipped blocks
reported, the picture is the LoRA's, not the base model's) and the shared model is left as it was."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from app.graph.model import Edge, Node
from tests.nodes import diffusion_helpers as h
from tests.nodes import flow_helpers as f
from tests.nodes.lora_helpers import peft_transformer_lora

STEPS = 6
MODELS = {"sd3": ("sd3_txt2img", f.SD3), "flux": ("flux_txt2img", f.FLUX)}
NOTHING = {"delta_dit": {"interval": 1}, "ras": {"ratio": 1.0}, "taylorseer": {"interval": 1}}
SOME = {"delta_dit": {"interval": 2, "boundary": 3}, "ras": {"ratio": 0.25, "start": 1, "interval": 4},
        "taylorseer": {"interval": 3, "start": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def root(dit_root):
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    (dit_root / "loras").mkdir()
    for family, kind in (("sd3", SD3Transformer2DModel), ("flux", FluxTransformer2DModel)):
        transformer = kind.from_pretrained(dit_root / MODELS[family][1], subfolder="transformer")
        save_file(peft_transformer_lora(transformer, seed=5), dit_root / "loras" / f"{family}.safetensors")
    return dit_root


def _graph(family: str, lora: bool, cache: dict | None, cache_first: bool = False):
    name, model = MODELS[family]
    g = f.graph(name, model, prompt__text=f.PROMPT, schedule__steps=STEPS)
    line = "model"  # the node whose model output feeds the sampler
    if lora:
        g.add_node(Node("lora", "model.lora", params={"lora_name": f"{family}.safetensors", "strength_model": 0.8,
                                                        "strength_clip": 1.0}))  # fmt: skip
        g.connect(Edge("model", "clip", "lora", "clip"))
        g.disconnect(g.input_edge("prompt", "clip"))
        g.connect(Edge("lora", "clip", "prompt", "clip"))
    if cache is not None:
        g.add_node(Node("cache", "sampling.cache", params=cache))
    order = ["cache", "lora"] if cache_first else ["lora", "cache"]
    for node in (n for n in order if n in g.nodes):
        g.connect(Edge(line, "model", node, "model"))
        line = node
    g.disconnect(g.input_edge("sampler", "model"))
    g.connect(Edge(line, "model", "sampler", "model"))
    return g


def _run(g):
    events: list[dict] = []
    latents = h.run(h.executor(), g, events=events).outputs["sampler"]["latent"].samples
    return latents, next(e for e in events if e.get("event") == "finished" and e.get("node") == "sampler")


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("strategy", sorted(NOTHING))
def test_caching_nothing_with_a_lora_equals_the_lora_run(root, family, strategy):
    with_lora, _ = _run(_graph(family, True, None))
    plain, _ = _run(_graph(family, False, None))
    assert (with_lora - plain).abs().max() > 1e-3  # the LoRA changes the picture
    for cache_first in (False, True):
        cached, done = _run(_graph(family, True, {"strategy": strategy, **NOTHING[strategy]}, cache_first))
        assert done["lora_layers"] > 0 and done.get("skipped_blocks", 0) == 0
        assert torch.equal(cached, with_lora), (strategy, cache_first)


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("strategy", sorted(SOME))
def test_caching_with_a_lora_applies_both_and_leaves_the_model_as_it_was(root, family, strategy):
    plain, _ = _run(_graph(family, False, None))
    cache = {"strategy": strategy, **SOME[strategy]}
    without_lora, _ = _run(_graph(family, False, cache))
    for cache_first in (False, True):
        cached, done = _run(_graph(family, True, cache, cache_first))
        assert done["lora_layers"] > 0 and 0 < done["skipped_blocks"] < done["cache_total_blocks"]
        assert torch.isfinite(cached).all() and (cached - without_lora).abs().max() > 1e-3
    again, _ = _run(_graph(family, False, None))
    assert torch.equal(again, plain)  # neither patch stayed on the shared model
