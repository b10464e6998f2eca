"""Smoke test of tools/train_tiny_controlnet.py on the tiny random model: a few steps change the ControlNet,
a run resumed halfway equals an uninterrupted one (seeded by step), and the export loads with its family."""

from __future__ import annotations

import json

import torch

from app.runtime.controlnets import family_of
from tools.make_tiny_random_model import write as write_model
from tools.train_tiny_controlnet import PRESETS, export, train

torch.set_num_threads(1)


def test_training_is_resumable_and_exports_a_loadable_controlnet(tmp_path):
    from diffusers import ControlNetModel

    model = write_model(tmp_path / "tiny-oracle", seed=0)
    cfg = PRESETS["tiny"]
    straight, steps = train(cfg, model, tmp_path / "a", 2, 600, 600, log=lambda *_: None)
    assert steps == 2
    train(cfg, model, tmp_path / "b", 1, 600, 600, log=lambda *_: None)
    resumed, steps = train(cfg, model, tmp_path / "b", 2, 600, 600, log=lambda *_: None)
    assert steps == 2
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert straight.controlnet_mid_block.weight.abs().sum() > 0  # the zero convolution learned something
    out = export(straight, tmp_path / "controlnet" / "tiny-shapes-canny", cfg, steps)
    assert json.loads((out / "nodeloom.json").read_text())["trained_steps"] == 2
    assert family_of(out) == "tiny-shapes"
    loaded = ControlNetModel.from_pretrained(out, local_files_only=True)
    assert torch.equal(loaded.controlnet_mid_block.weight, straight.controlnet_mid_block.weight)
