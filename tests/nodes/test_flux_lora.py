"""LoRA on Flux (and SD3): diffusers/peft files equal FluxPipeline.load_lora_weights; kohya and ComfyUI
files in Black Forest Labs' module names (fused q/k/v, alpha) change each diffusers weight by exactly the
BFL-layout change converted like the model's own weights; the loaded weights are restored after."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from app.graph.model import Edge, Node
from app.runtime import families, lora
from app.runtime.families import flux_keys
from tests.nodes import diffusion_helpers as h
from tests.nodes import flow_helpers as f
from tests.nodes.lora_helpers import assert_changes, peft_transformer_lora
from tools import make_tiny_random_dit as dit

FLUX = families.by_name("flux")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flux-lora")
    with h.model_root(folder):
        dit.write("flux", folder / f.FLUX, seed=2)
        (folder / "loras").mkdir()
        yield folder


def _with_lora(name: str, strength: float):
    g = f.graph("flux_txt2img", f.FLUX, prompt__text=f.PROMPT, schedule__steps=3)
    g.add_node(
        Node(
            "lora", "model.lora", params={"lora_name": name, "strength_model": strength, "strength_clip": 1.0}
        )
    )
    g.connect(Edge("model", "model", "lora", "model"))
    g.connect(Edge("model", "clip", "lora", "clip"))
    for dst, port, out in (
        ("sampler", "model", "model"),
        ("guidance", "model", "model"),
        ("prompt", "clip", "clip"),
    ):
        g.disconnect(g.input_edge(dst, port))
        g.connect(Edge("lora", out, dst, port))
    return g


def test_a_diffusers_format_flux_lora_equals_load_lora_weights(root):
    pipe = f.pipeline(root / f.FLUX)
    save_file(peft_transformer_lora(pipe.transformer, seed=1), root / "loras" / "peft.safetensors")
    ours = h.run(h.executor(), _with_lora("peft.safetensors", 0.8)).outputs["sampler"]["latent"].samples
    plain = h.run(h.executor(), f.graph("flux_txt2img", f.FLUX, prompt__text=f.PROMPT, schedule__steps=3))
    pipe.load_lora_weights(str(root / "loras" / "peft.safetensors"), adapter_name="x", local_files_only=True)
    pipe.set_adapters(["x"], adapter_weights=[0.8])
    reference = f.reference(pipe, 3, 3.5, 0)
    assert (ours - reference).abs().max() < 1e-4
    assert (ours - plain.outputs["sampler"]["latent"].samples).abs().max() > 1e-2
    again = h.run(
        h.executor(),
        f.graph("flux_txt2img", f.FLUX, prompt__text=f.PROMPT, schedule__steps=3, sampler__seed=0),
    )
    assert torch.equal(again.outputs["sampler"]["latent"].samples, plain.outputs["sampler"]["latent"].samples)


def _xlabs_lora(pipe, seed: int, rank: int = 2) -> dict[str, torch.Tensor]:
    """XLabs' format: LoRAs on the attention processors of every double block (image and text q/k/v and
    out projections) and single block (q/k/v alone, and the output projection), no alphas."""
    generator = torch.Generator().manual_seed(seed)
    width = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    out_single = pipe.transformer.single_transformer_blocks[0].proj_out.in_features
    state = {}
    modules = {"qkv_lora1": (width, 3 * width), "proj_lora1": (width, width)}
    modules |= {"qkv_lora2": (width, 3 * width), "proj_lora2": (width, width)}
    blocks = [(f"double_blocks.{i}", modules) for i in range(len(pipe.transformer.transformer_blocks))]
    single = {"qkv_lora": (width, 3 * width), "proj_lora": (out_single, width)}
    blocks += [(f"single_blocks.{i}", single) for i in range(len(pipe.transformer.single_transformer_blocks))]
    for block, shapes in blocks:
        for name, (inp, out) in shapes.items():
            state[f"{block}.processor.{name}.down.weight"] = torch.randn(rank, inp, generator=generator) * 0.3
            state[f"{block}.processor.{name}.up.weight"] = torch.randn(out, rank, generator=generator) * 0.3
    return state


def test_an_xlabs_flux_lora_equals_load_lora_weights(root):
    """diffusers' own XLabs converter (inside load_lora_weights) is the oracle; Load LoRA says the format."""
    pipe = f.pipeline(root / f.FLUX)
    path = root / "loras" / "xlabs.safetensors"
    save_file(_xlabs_lora(pipe, seed=4), path)
    assert lora.describe(path)["format"] == "xlabs"
    ours = h.run(h.executor(), _with_lora("xlabs.safetensors", 0.8)).outputs["sampler"]["latent"].samples
    pipe.load_lora_weights(str(path), adapter_name="x", local_files_only=True)
    pipe.set_adapters(["x"], adapter_weights=[0.8])
    reference = f.reference(pipe, 3, 3.5, 0)
    plain = h.run(h.executor(), f.graph("flux_txt2img", f.FLUX, prompt__text=f.PROMPT, schedule__steps=3))
    assert (ours - reference).abs().max() < 1e-4
    assert (ours - plain.outputs["sampler"]["latent"].samples).abs().max() > 1e-2


def _bfl_lora(pipe, seed: int, rank: int = 2, comfy: bool = False):
    """A kohya-style LoRA on BFL modules (fused qkv, linear1, modulation, final norm) with alphas (or the
    same in ComfyUI's dotted `diffusion_model.` names), and the change each BFL weight gets
    (alpha / rank * up @ down)."""
    generator = torch.Generator().manual_seed(seed)
    bfl = dit.bfl_layout(pipe.transformer.state_dict())
    targets = [k[: -len(".weight")] for k in bfl if k.endswith(".weight") and bfl[k].ndim == 2]
    state, changes = {}, {}
    for index, module in enumerate(targets):
        out, inp = bfl[module + ".weight"].shape
        down = torch.randn(rank, inp, generator=generator) * 0.2
        up = torch.randn(out, rank, generator=generator) * 0.2
        alpha = (1.0, 4.0)[index % 2]
        kohya = f"diffusion_model.{module}" if comfy else "lora_unet_" + module.replace(".", "_")
        state |= {
            f"{kohya}.lora_down.weight": down,
            f"{kohya}.lora_up.weight": up,
            f"{kohya}.alpha": torch.tensor(alpha),
        }
        changes[module + ".weight"] = alpha / rank * up @ down
    return state, changes


def test_kohya_and_comfyui_flux_loras_change_each_weight_as_the_model_converter_says(root):
    pipe = f.pipeline(root / f.FLUX)
    state, changes = _bfl_lora(pipe, seed=3)
    comfy, _ = _bfl_lora(pipe, seed=3, comfy=True)
    expected = flux_keys.to_diffusers(changes)  # the BFL-layout change, through the weights' converter
    for tensors in (state, comfy):
        assert_changes(lora.convert(tensors, pipe.transformer.config, "x", FLUX), expected)


def test_a_kohya_flux_lora_runs_in_the_graph_and_leaves_the_model_as_it_was(root):
    from app.runtime.models import manager

    pipe = f.pipeline(root / f.FLUX)
    state, _ = _bfl_lora(pipe, seed=5)
    save_file(state, root / "loras" / "kohya.safetensors")
    events: list[dict] = []
    result = h.run(h.executor(), _with_lora("kohya.safetensors", 1.0), events=events)
    finished = [e for e in events if e.get("event") == "finished" and e.get("node") == "sampler"]
    assert finished and finished[0].get("lora_layers", 0) > 0
    assert not [e for e in events if e.get("event") == "warning"]
    loaded = manager().load(manager().loaded()[-1], torch.device("cpu"))
    reference = pipe.transformer.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.denoiser.state_dict().items())
    assert torch.isfinite(result.outputs["sampler"]["latent"].samples).all()
