"""The example LoRA's trainer: seeded, resumable, written in kohya's format that our loader reads back."""

from __future__ import annotations

import torch

from app.runtime import lora
from tools import train_tiny_lora as trainer


def _layers(unet, text, rank):
    return trainer.kohya_state(unet, text, rank)


def test_resuming_equals_training_straight_and_the_export_loads(tmp_path):
    torch.set_num_threads(1)
    straight = _layers(*trainer.train(3, 2, 2, 1e-3, tmp_path / "a", pool_size=16, log=lambda m: None), 2)
    trainer.train(2, 2, 2, 1e-3, tmp_path / "b", pool_size=16, log=lambda m: None)
    resumed = _layers(*trainer.train(3, 2, 2, 1e-3, tmp_path / "b", pool_size=16, log=lambda m: None), 2)
    assert straight.keys() == resumed.keys()
    assert all(torch.allclose(straight[k], resumed[k], atol=1e-6) for k in straight)
    path = tmp_path / "x.safetensors"
    from safetensors.torch import save_file

    save_file(straight, str(path))
    from diffusers import UNet2DConditionModel

    loaded = lora.read(path, UNet2DConditionModel.load_config(trainer.BASE / "unet"))
    assert loaded.skipped == [] and loaded.parts() == {"unet", "text_encoder"}
    assert len(loaded.layers) == len(straight) // 3  # down, up and alpha per layer
