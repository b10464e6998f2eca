"""kohya- and ComfyUI-format SD3 LoRAs (Stability's module names) on the tiny SD3: each module's change lands on
the diffusers weight the single-file converter maps it to (q/k/v thirds, swapped adaLN halves where diffusers
swaps them), and the LoRA runs in the graph, leaving the model as it was."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from app.graph.model import Edge, Node
from app.runtime import lora
from app.runtime.families import by_name
from tests.nodes import diffusion_helpers as h
from tests.nodes import flow_helpers as f
from tests.nodes.lora_helpers import assert_changes
from tools import make_tiny_random_dit as dit

SD3 = by_name("sd3")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd3-lora")
    with h.model_root(folder):
        dit.write("sd3", folder / f.SD3, seed=0)
        yield folder


def _stability_lora(config, seed=4, rank=2, comfy=False):
    """Random up/down pairs on Stability's modules of every joint block and the final layer; the expected
    change of each diffusers weight, written from the SD3 layout (not from the code under test)."""
    gen = torch.Generator().manual_seed(seed)
    width = config.num_attention_heads * config.attention_head_dim
    blocks = config.num_layers
    modules = {}
    for i in range(blocks):
        modules[f"joint_blocks.{i}.x_block.attn.qkv"] = (3 * width, width)
        modules[f"joint_blocks.{i}.x_block.mlp.fc1"] = (4 * width, width)
        modules[f"joint_blocks.{i}.context_block.attn.qkv"] = (3 * width, width)
        modules[f"joint_blocks.{i}.context_block.adaLN_modulation.1"] = (
            (2 if i == blocks - 1 else 6) * width, width)  # fmt: skip
    modules["final_layer.adaLN_modulation.1"] = (2 * width, width)
    state, expected = {}, {}
    for module, (rows, cols) in modules.items():
        down = torch.randn(rank, cols, generator=gen)
        up = torch.randn(rows, rank, generator=gen) * 0.1
        name = f"diffusion_model.{module}" if comfy else "lora_unet_" + module.replace(".", "_")
        state.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
                      f"{name}.alpha": torch.tensor(float(rank))})  # fmt: skip
        change = up @ down
        block = module.split(".")[1] if module.startswith("joint") else None
        if module.endswith("qkv"):
            names = (
                ("to_q", "to_k", "to_v")
                if ".x_block." in module
                else ("add_q_proj", "add_k_proj", "add_v_proj")
            )
            for n, part in zip(names, change.chunk(3), strict=True):
                expected[f"transformer_blocks.{block}.attn.{n}.weight"] = part
        elif module.endswith("x_block.mlp.fc1"):
            expected[f"transformer_blocks.{block}.ff.net.0.proj.weight"] = change
        elif module.startswith("joint"):  # a context adaLN: the last block's is stored (scale, shift)
            swap = int(block) == blocks - 1
            shift, scale = change.chunk(2)
            expected[f"transformer_blocks.{block}.norm1_context.linear.weight"] = (
                torch.cat([scale, shift]) if swap else change)  # fmt: skip
        else:
            shift, scale = change.chunk(2)
            expected["norm_out.linear.weight"] = torch.cat([scale, shift])
    return state, expected


@pytest.mark.parametrize("comfy", [False, True])
def test_each_stability_module_changes_the_weight_it_maps_to(root, comfy):
    pipe = f.pipeline(root / f.SD3)
    state, expected = _stability_lora(pipe.transformer.config, comfy=comfy)
    got = assert_changes(lora.convert(state, pipe.transformer.config, "x", SD3), expected)
    module = pipe.transformer
    for key, change in got.items():  # every target exists on the model with the change's shape
        assert module.get_parameter(key).shape == change.shape, key


def test_a_kohya_sd3_lora_runs_in_the_graph_and_leaves_the_model_as_it_was(root):
    pipe = f.pipeline(root / f.SD3)
    state, _ = _stability_lora(pipe.transformer.config)
    (root / "loras").mkdir(exist_ok=True)
    save_file(state, root / "loras" / "tiny-sd3-kohya.safetensors")

    def graph(strength):
        g = f.graph("sd3_txt2img", f.SD3, prompt__text=f.PROMPT, schedule__steps=3)
        g.add_node(Node("lora", "model.lora_model_only", params={"lora_name": "tiny-sd3-kohya.safetensors",
                                                                  "strength_model": strength}))  # fmt: skip
        g.connect(Edge("model", "model", "lora", "model"))
        g.disconnect(g.input_edge("sampler", "model"))
        g.connect(Edge("lora", "model", "sampler", "model"))
        return g

    plain = h.run(h.executor(), graph(0.0)).outputs["sampler"]["latent"].samples
    patched = h.run(h.executor(), graph(1.0)).outputs["sampler"]["latent"].samples
    again = h.run(h.executor(), graph(0.0)).outputs["sampler"]["latent"].samples
    assert (patched - plain).abs().max() > 1e-4 and torch.equal(again, plain)
