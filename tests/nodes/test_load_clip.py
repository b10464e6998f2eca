"""Load CLIP (ComfyUI's CLIPLoader): one text encoder file for a model with one, read against that model kind's
skeleton; Text Encode through it equals the checkpoint's own CLIP, and a file of the wrong width is named."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from app.engine.plan import validate
from app.graph.model import Edge, Node
from app.registry import default_registry
from tests.nodes import diffusion_helpers as h


@pytest.fixture
def clip_file(model_path):
    """The tiny model's text encoder as a ComfyUI-style single file (text_model. names), and its skeleton."""
    root = model_path.parent
    (root / "text_encoders").mkdir(exist_ok=True)
    state = load_file(model_path / "text_encoder" / "model.safetensors")
    save_file(
        {"text_model." + k: v for k, v in state.items()}, root / "text_encoders" / "tiny-clip_l.safetensors"
    )
    skeleton = root / "configs" / h.MODEL
    shutil.rmtree(skeleton, ignore_errors=True)
    shutil.copytree(model_path, skeleton, ignore=shutil.ignore_patterns("*.safetensors"))
    return "tiny-clip_l.safetensors"


def _graph(name: str):
    g = h.graph("txt2img")
    g.add_node(
        Node("clip", "model.clip", params={"clip_name": name, "type": "stable_diffusion", "config": h.MODEL})
    )
    for prompt in ("prompt", "negative"):
        g.disconnect(g.input_edge(prompt, "clip"))
        g.connect(Edge("clip", "clip", prompt, "clip"))
    return g


def test_text_encode_through_load_clip_equals_the_checkpoints_own_clip(clip_file):
    own = h.run(h.executor(), h.graph("txt2img"), target="prompt").outputs["prompt"]["conditioning"]
    loaded = h.run(h.executor(), _graph(clip_file), target="prompt").outputs["prompt"]["conditioning"]
    assert torch.equal(loaded.embeddings, own.embeddings)
    assert not [p for p in validate(_graph(clip_file), default_registry())]


def test_a_text_encoder_of_another_width_is_refused_with_its_name(clip_file, model_path):
    root = model_path.parent
    state = load_file(root / "text_encoders" / clip_file)
    wide = {k: torch.zeros(*(2 * d if d == v.shape[-1] else d for d in v.shape)) for k, v in state.items()}
    save_file(wide, root / "text_encoders" / "wide.safetensors")
    problems = [str(p) for p in validate(_graph("wide.safetensors"), default_registry())]
    assert any("wide.safetensors" in p and "fits none" in p for p in problems), problems
