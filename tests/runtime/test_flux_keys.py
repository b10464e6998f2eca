"""Our Flux layout converter against diffusers' own on a full-size layout (names and shapes, on the meta
device: diffusers' converter only works at the released width), and its exact inverse on a tiny model."""

from __future__ import annotations

import torch
from diffusers import FluxTransformer2DModel
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

from app.runtime.checkpoints import SHIPPED_CONFIGS
from app.runtime.families import flux_keys
from tools import make_tiny_random_dit as dit


def test_full_size_names_and_shapes_equal_diffusers_converter():
    config = FluxTransformer2DModel.load_config(SHIPPED_CONFIGS / "flux-dev" / "transformer")
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config({**config, "num_layers": 2, "num_single_layers": 2})
    bfl = dit.bfl_layout(model.state_dict())
    assert flux_keys.is_bfl(bfl) and not flux_keys.is_bfl(model.state_dict())
    ours = flux_keys.to_diffusers({"model.diffusion_model." + k: v for k, v in bfl.items()})
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    assert ours.keys() == theirs.keys() == model.state_dict().keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_a_tiny_model_converts_back_to_its_own_tensors():
    transformer = dit.make_components("flux", seed=4)["transformer"]
    state = transformer.state_dict()
    bfl = dit.bfl_layout(state)
    assert "single_blocks.0.linear1.weight" in bfl and "double_blocks.0.img_attn.qkv.weight" in bfl
    back = flux_keys.to_diffusers(bfl)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    shifted = flux_keys.to_diffusers({**bfl, "final_layer.adaLN_modulation.1.bias": torch.arange(2.0 * 32)})
    assert torch.equal(
        shifted["norm_out.linear.bias"][:32], torch.arange(32.0, 64.0)
    )  # (shift, scale) swapped
