"""Load Checkpoint: single files load offline through a config skeleton and equal their diffusers folder;
missing models and unsupported layouts are validation errors that say what and where."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from app.engine.plan import validate
from app.registry import default_registry
from app.runtime import checkpoints
from tests.nodes import diffusion_helpers as h
from tools.ldm_layout import write_single_file


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    with h.model_root(folder) as model:
        yield from _roots(folder, model)


def _roots(folder, model):
    pipe = h.pipeline(model)
    single = folder / "checkpoints" / "tiny-single.safetensors"
    single.parent.mkdir()
    write_single_file(pipe.unet, pipe.vae, pipe.text_encoder, single)
    skeleton = folder / "configs" / "tiny-oracle-skeleton"
    for part in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        shutil.copytree(model / part, skeleton / part, ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copy(model / "model_index.json", skeleton / "model_index.json")
    yield folder, model, single


def test_single_file_loads_offline_and_matches_its_folder(roots):
    folder, model, single = roots
    keys = checkpoints.safetensors_keys(single)
    assert checkpoints.detect_layout(single) == "sd15"
    assert "model.diffusion_model.output_blocks.3.0.skip_connection.weight" in keys
    settings = dict(schedule__steps=3, sampler__seed=5)
    from_folder = h.run(h.executor(), h.graph(**settings), target="decode").outputs["decode"]["image"]
    g = h.graph(**settings, model__config="tiny-oracle-skeleton")
    g.set_param("model", "checkpoint", "tiny-single.safetensors")
    from_file = h.run(h.executor(), g, target="decode").outputs["decode"]["image"]
    assert from_file.shape == from_folder.shape == (1, h.SIZE, h.SIZE, 3)
    assert (from_file == from_folder).all()


def test_single_file_weights_are_bit_identical(roots):
    from app.runtime.models import manager
    from app.runtime.values import CheckpointSource

    folder, model, single = roots
    skeleton = folder / "configs" / "tiny-oracle-skeleton"
    loaded = manager().load(CheckpointSource(str(single), "x", str(skeleton)), torch.device("cpu"))
    reference = h.pipeline(model)
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = loaded.modules[part].state_dict(), getattr(reference, part).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k].reshape(ours[k].shape)) for k in ours), part


def test_missing_model_says_which_file_where_and_which_node(roots):
    g = h.graph()
    g.set_param("model", "checkpoint", "no-such-model.safetensors")
    problems = [str(p) for p in validate(g, default_registry())]
    assert len(problems) == 1
    text = problems[0]
    assert "node 'model' 'checkpoint'" in text and "no-such-model.safetensors" in text
    assert str(roots[0]) in text  # where it looked


def test_single_file_problems_are_validation_errors(roots):
    registry = default_registry()
    g = h.graph()
    g.set_param("model", "checkpoint", "tiny-single.safetensors")
    g.set_param("model", "config", "no-such-skeleton")
    problems = [str(p) for p in validate(g, registry)]
    assert len(problems) == 1 and "config skeleton 'no-such-skeleton' not found (looked in" in problems[0]
    g.set_param("model", "config", "auto")  # keys say sd15: the shipped skeleton, tokenizer shipped too
    assert validate(g, registry) == []
    assert checkpoints.find_skeleton(roots[2], "auto") == checkpoints.SHIPPED_CONFIGS / "sd15"


def test_family_comes_from_the_config(roots, tmp_path):
    _, model, _ = roots
    assert checkpoints.family_of(model) == "tiny-oracle"
    fake = tmp_path / "sd-like"
    (fake / "unet").mkdir(parents=True)
    (fake / "model_index.json").write_text("{}")
    config = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768}
    (fake / "unet" / "config.json").write_text(json.dumps(config))
    assert checkpoints.family_of(fake) == "sd15"
    (fake / "unet" / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 1024}))
    assert checkpoints.family_of(fake) == "sd2"
