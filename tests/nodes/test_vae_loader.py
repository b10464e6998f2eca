"""Load VAE: single files (original or diffusers keys) and folders replace a checkpoint's VAE exactly, the
latent space is read from the header and checked against the model before anything runs."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
from safetensors.torch import save_file

from app.engine.plan import validate
from app.graph.model import Edge, Node
from app.registry import default_registry
from app.runtime import vaes
from tests.nodes import diffusion_helpers as h
from tools.ldm_layout import vae_key


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    with h.model_root(folder) as model:
        vae = h.pipeline(model).vae
        (folder / "vae").mkdir()
        levels = len(vae.config.block_out_channels)
        ldm = {}
        for key, value in vae.state_dict().items():
            new = vae_key(key, levels)
            ldm[new] = value[:, :, None, None] if ".attn_1." in new and value.ndim == 2 else value
        save_file({k: v.contiguous() for k, v in ldm.items()}, str(folder / "vae" / "tiny-ldm.safetensors"))
        save_file(dict(vae.state_dict()), str(folder / "vae" / "tiny-diffusers.safetensors"))
        skeleton = folder / "configs" / "tiny-oracle"
        shutil.copytree(model / "vae", skeleton / "vae", ignore=shutil.ignore_patterns("*.safetensors"))
        shutil.copytree(model / "vae", folder / "vae" / "tiny-folder")
        (folder / "vae" / "tiny-folder" / "nodeloom.json").write_text(json.dumps({"family": "tiny-oracle"}))
        yield folder


def with_vae(**params):
    g = h.graph(schedule__steps=2, sampler__seed=3)
    g.add_node(Node("vae", "model.vae", params=params))
    for node in ("decode", "latent"):
        g.disconnect(g.input_edge(node, "vae"))
        g.connect(Edge("vae", "vae", node, "vae"))
    return g


@pytest.mark.parametrize(
    "params",
    [
        {"vae_name": "tiny-ldm.safetensors", "config": "tiny-oracle"},
        {"vae_name": "tiny-diffusers.safetensors", "config": "tiny-oracle"},
        {"vae_name": "tiny-folder"},
    ],
)
def test_a_separate_vae_decodes_exactly_like_the_checkpoints_own(root, params):
    own = h.run(h.executor(), h.graph(schedule__steps=2, sampler__seed=3), target="decode")
    events = []
    loaded = h.run(h.executor(), with_vae(**params), target="decode", events=events)
    assert np.array_equal(own.outputs["decode"]["image"], loaded.outputs["decode"]["image"])
    assert any(e["event"] == "model" and e["action"] == "load" and e["node"] == "vae" for e in events)


def write_header(path, channels: int) -> None:
    """A header-only VAE file in original keys with `channels` latent channels (no weights)."""
    header = {
        "encoder.conv_out.weight": {
            "dtype": "F16",
            "shape": [2 * channels, 512, 3, 3],
            "data_offsets": [0, 0],
        }
    }
    data = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data)


def test_the_latent_space_is_read_from_the_header_and_checked(root):
    folder = root / "vae"
    write_header(folder / "sdxl_vae.safetensors", 4)
    write_header(folder / "vae-ft-mse-840000.safetensors", 4)
    write_header(folder / "ae.safetensors", 16)
    write_header(folder / "sd3_vae.safetensors", 16)
    write_header(folder / "odd.safetensors", 8)
    assert vaes.family_of(folder / "ae.safetensors") == "flux"  # 16 channels: Flux's unless it says SD3
    assert vaes.family_of(folder / "sd3_vae.safetensors") == "sd3"
    assert vaes.family_of(folder / "ae.safetensors", "sd3.5-large") == "sd3"
    assert vaes.family_of(folder / "sdxl_vae.safetensors") == "sdxl"
    assert vaes.family_of(folder / "vae-ft-mse-840000.safetensors") == "sd"
    assert vaes.family_of(folder / "vae-ft-mse-840000.safetensors", "sdxl") == "sdxl"  # the config decides
    registry = default_registry()
    g = with_vae(vae_name="odd.safetensors")
    problems = [str(p) for p in validate(g, registry)]
    assert problems == [
        "node 'vae': odd.safetensors: a 8-channel VAE; 4-channel and 16-channel ones load here"
    ]
    g = with_vae(vae_name="ae.safetensors")  # Flux's VAE on the tiny SD model's latents
    problems = [str(p) for p in validate(g, registry)]
    assert len(problems) == 1 and "latent spaces differ: flux, tiny-oracle" in problems[0]
    g = with_vae(vae_name="sdxl_vae.safetensors")  # an SDXL VAE on the tiny SD model's latents
    problems = [str(p) for p in validate(g, registry)]
    assert problems == [
        "node 'sampler': latent spaces differ: sdxl, tiny-oracle (guider: tiny-oracle, latent: sdxl, "
        "model: tiny-oracle, negative: tiny-oracle, positive: tiny-oracle)"
    ]
