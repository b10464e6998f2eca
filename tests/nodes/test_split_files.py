"""Flux and SD3 from ComfyUI-style split files (Load Diffusion Model, Dual / Triple CLIP, Load VAE): the
parts load to the same tensors as the diffusers folder they were written from, the pictures are equal,
what a file is comes from its header, and a wrong file is refused with its name."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from app.engine.plan import validate
from app.graph import serialize
from app.graph.model import Edge, Node
from app.registry import default_registry
from app.runtime import components
from app.runtime.checkpoints import SHIPPED_CONFIGS
from tests.nodes import diffusion_helpers as h
from tests.nodes import flow_helpers as f
from tools import make_tiny_random_dit as dit

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")
    with h.model_root(folder):
        dit.write("flux", folder / f.FLUX, seed=2)
        dit.write("sd3", folder / f.SD35, seed=1, sd35=True)
        names = {
            f.FLUX: dit.write_split(folder / f.FLUX, folder, prefix="model.diffusion_model."),
            f.SD35: dit.write_split(folder / f.SD35, folder),
        }
        yield folder, names


def _flux_split(names, **params):
    g = serialize.load(h.ROOT / "graphs" / "flux_split.json", default_registry())
    for key, value in {
        "sampler__seed": 0,
        "latent__width": f.SIZE,
        "latent__height": f.SIZE,
        **params,
    }.items():
        g.set_param(*key.split("__"), value)
    g.set_param("model", "unet_name", names["transformer"])
    g.set_param("clip", "clip_name1", names["text_encoder_2"])  # either order: the files say which is which
    g.set_param("clip", "clip_name2", names["text_encoder"])
    g.set_param("vae", "vae_name", names["vae"])
    g.set_param("lora", "strength_model", 0.0)  # the shipped graph's LoRA and cache are off here:
    g.set_param("lora", "strength_clip", 0.0)  # these tests compare the loaders alone
    g.set_param("cache", "strategy", "none")
    for node in ("model", "clip", "vae"):
        g.set_param(node, "config", names["config"])
    return g


def test_flux_from_split_files_equals_its_diffusers_folder(root):
    folder, names = root
    settings = dict(prompt__text=f.PROMPT, schedule__steps=3, guidance__scale=3.5)
    outputs = {}
    for name, g in (
        ("split", _flux_split(names[f.FLUX], **settings)),
        ("whole", f.graph("flux_txt2img", f.FLUX, **settings)),
    ):
        latents = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
        outputs[name] = (latents, h.run(h.executor(), g, target="decode").outputs["decode"]["image"])
    assert (outputs["split"][0] - outputs["whole"][0]).abs().max() < TOLERANCE
    assert abs(outputs["split"][1] - outputs["whole"][1]).max() < 1e-4


def test_the_split_parts_are_the_folders_tensors(root):
    from app.runtime.models import manager

    folder, names = root
    g = _flux_split(names[f.FLUX])
    h.run(h.executor(), g)
    pipe = f.pipeline(folder / f.FLUX)
    loaded = {}
    for source in manager().loaded():
        for part, _ in source.parts:
            loaded[part] = manager().load(source, torch.device("cpu")).modules[part]
    assert set(loaded) >= {"transformer", "text_encoder", "text_encoder_2"}
    for part, module in loaded.items():
        ours, theirs = module.state_dict(), getattr(pipe, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), part


def test_sd35_from_triple_clip_and_a_diffusers_layout_file_equals_its_folder(root):
    folder, names = root
    parts = names[f.SD35]
    settings = dict(prompt__text=f.PROMPT, negative__text="blurry", schedule__steps=3)
    g = f.graph("sd3_txt2img", f.SD35, **settings)
    whole = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    registry = default_registry()
    g.add_node(
        Node(
            "unet",
            "model.diffusion_model",
            params={"unet_name": parts["transformer"], "config": parts["config"]},
        )
    )
    clips = [parts["text_encoder_3"], parts["text_encoder"], parts["text_encoder_2"]]  # any order
    params = {f"clip_name{i + 1}": name for i, name in enumerate(clips)} | {"config": parts["config"]}
    g.add_node(Node("clips", "model.triple_clip", params=params))
    g.add_node(Node("ae", "model.vae", params={"vae_name": parts["vae"], "config": parts["config"]}))
    for dst, port, src, out in (
        ("sampler", "model", "unet", "model"),
        ("guidance", "model", "unet", "model"),
        ("prompt", "clip", "clips", "clip"),
        ("negative", "clip", "clips", "clip"),
        ("latent", "vae", "ae", "vae"),
        ("decode", "vae", "ae", "vae"),
    ):
        g.disconnect(g.input_edge(dst, port))
        g.connect(Edge(src, out, dst, port))
    g.remove_node("model")
    assert validate(g, registry) == []
    split = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    assert (split - whole).abs().max() < TOLERANCE


def test_fp8_text_encoders_are_upcast(root, tmp_path):
    folder, _ = root
    other = tmp_path / "models"
    names = dit.write_split(folder / f.FLUX, other, fp8_t5=True)
    spec = next(e for e in f.families_flux().encoders if e.kind == "t5")
    module = components.read_text_encoder(
        other / "text_encoders" / names["text_encoder_2"],
        other / "configs" / names["config"],
        spec,
        torch.float32,
    )
    reference = f.pipeline(folder / f.FLUX).text_encoder_2.state_dict()
    for key, value in module.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, reference[key].to(torch.float8_e4m3fn).float()), key


def _header_file(path, shapes):
    header = {k: {"dtype": "F16", "shape": list(v), "data_offsets": [0, 0]} for k, v in shapes.items()}
    data = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data)
    return path


def test_full_size_files_are_told_apart_by_their_header(tmp_path):
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        config = FluxTransformer2DModel.load_config(SHIPPED_CONFIGS / "flux-dev" / "transformer")
        flux = FluxTransformer2DModel.from_config({**config, "num_layers": 2, "num_single_layers": 2})
    bfl = {k: tuple(v.shape) for k, v in dit.bfl_layout(flux.state_dict()).items()}
    assert components.diffusion_model_skeleton(_header_file(tmp_path / "dev.safetensors", bfl)) == "flux-dev"
    schnell = {k: v for k, v in bfl.items() if not k.startswith("guidance_in.")}
    prefixed = {"model.diffusion_model." + k: v for k, v in schnell.items()}
    assert (
        components.diffusion_model_skeleton(_header_file(tmp_path / "s.safetensors", prefixed))
        == "flux-schnell"
    )
    diffusers_layout = {k: tuple(v.shape) for k, v in flux.state_dict().items()}
    assert (
        components.diffusion_model_skeleton(_header_file(tmp_path / "d.safetensors", diffusers_layout))
        == "flux-dev"
    )
    marker = "joint_blocks.{}.context_block.adaLN_modulation.1.bias"
    sd3 = {marker.format(i): (9216,) for i in range(24)}
    large = {marker.format(i): (14592,) for i in range(38)}
    medium35 = {**sd3, "joint_blocks.0.x_block.attn2.qkv.weight": (4608, 1536)}
    for shapes, skeleton in ((sd3, "sd3-medium"), (large, "sd3.5-large"), (medium35, "sd3.5-medium")):
        assert (
            components.diffusion_model_skeleton(_header_file(tmp_path / "m.safetensors", shapes)) == skeleton
        )
    with pytest.raises(components.CheckpointProblem, match="not a diffusion model this app knows"):
        components.diffusion_model_skeleton(_header_file(tmp_path / "x.safetensors", {"conv.weight": (4, 4)}))


def test_wrong_files_are_refused_with_their_names(root):
    folder, names = root
    registry = default_registry()
    flux = names[f.FLUX]
    g = _flux_split(flux)
    g.set_param("clip", "clip_name2", flux["text_encoder_2"])  # T5 twice
    problems = [str(p) for p in validate(g, registry)]
    assert any("node 'clip'" in p and "are both text_encoder_2" in p for p in problems), problems
    g = _flux_split(flux)
    g.set_param("clip", "clip_name1", "../vae/" + flux["vae"])
    problems = [str(p) for p in validate(g, registry)]
    assert any("not a CLIP or T5 text encoder" in p or "leaves" in p for p in problems), problems
    sd35 = names[f.SD35]
    g = _flux_split(flux)
    g.set_param("clip", "clip_name1", sd35["text_encoder_2"])  # SD3's CLIP-G (12 wide) for Flux's CLIP-L
    problems = [str(p) for p in validate(g, registry)]
    assert any("fits none of this flux model's (text_encoder 8, T5)" in p for p in problems), problems
