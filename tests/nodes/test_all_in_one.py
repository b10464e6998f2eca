"""SD3 and Flux checkpoints in one file, as ComfyUI saves them (transformer under `model.diffusion_model.`,
VAE under `first_stage_model.`, text encoders under `text_encoders.<clip_l|clip_g|t5xxl>.transformer.`),
through Load Checkpoint: the family comes from the header, the pictures equal the diffusers folder the
file was written from, an SD3 file without T5 runs as the pipeline does without it, and a file without text
encoders says where to get them."""

from __future__ import annotations

import pytest
import torch

from app.engine.plan import validate
from app.registry import default_registry
from app.runtime import checkpoints, components
from tests.nodes import diffusion_helpers as h
from tests.nodes import flow_helpers as f
from tools import make_tiny_random_dit as dit

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("all_in_one")
    with h.model_root(folder):
        dit.write("flux", folder / f.FLUX, seed=2)
        dit.write("sd3", folder / f.SD35, seed=1, sd35=True)
        files = {
            "flux": dit.write_all_in_one(folder / f.FLUX, folder, "flux1-tiny.safetensors"),
            "sd3": dit.write_all_in_one(folder / f.SD35, folder, "sd35-tiny.safetensors"),
            "sd3_clips": dit.write_all_in_one(
                folder / f.SD35,
                folder,
                "sd35-tiny-incl-clips.safetensors",
                ("text_encoder", "text_encoder_2"),
            ),
            "bare": dit.write_all_in_one(folder / f.SD35, folder, "sd35-tiny-bare.safetensors", ()),
        }
        yield folder, files


def _graph(name: str, checkpoint, skeleton: str, **params):
    g = f.graph(name, checkpoint.name, **params)
    g.set_param(
        "model", "config", skeleton
    )  # the tiny model's own skeleton (auto would pick a full-size one)
    return g


def _pictures(g):
    result = h.run(h.executor(), g, target="decode")
    return h.run(h.executor(), g).outputs["sampler"]["latent"].samples, result.outputs["decode"]["image"]


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_an_all_in_one_file_equals_its_diffusers_folder(root, kind):
    folder, files = root
    model = f.FLUX if kind == "flux" else f.SD35
    graph_name = "flux_txt2img" if kind == "flux" else "sd3_txt2img"
    settings = dict(prompt__text=f.PROMPT, schedule__steps=3, guidance__scale=3.5)
    if kind == "sd3":
        settings["negative__text"] = "blurry"
    one_file = _graph(graph_name, files[kind], model, **settings)
    assert validate(one_file, default_registry()) == []
    ours, picture = _pictures(one_file)
    whole, whole_picture = _pictures(f.graph(graph_name, model, **settings))
    assert (ours - whole).abs().max() < TOLERANCE
    assert abs(picture - whole_picture).max() < 1e-4


def test_the_parts_are_read_from_their_prefixes(root):
    """Each module of the file has exactly the tensors of the folder's module."""
    from app.runtime.models import manager

    folder, files = root
    source = h.run(
        h.executor(), _graph("flux_txt2img", files["flux"], f.FLUX, prompt__text="x"), target="model"
    )
    handle = source.outputs["model"]["model"].source
    loaded = manager().load(handle, torch.device("cpu"))
    pipe = f.pipeline(folder / f.FLUX)
    assert set(loaded.modules) == {"transformer", "vae", "text_encoder", "text_encoder_2"}
    for part, module in loaded.modules.items():
        ours, theirs = module.state_dict(), getattr(pipe, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), part


def test_an_sd3_file_without_t5_runs_as_the_pipeline_without_t5(root):
    folder, files = root
    g = _graph("sd3_txt2img", files["sd3_clips"], f.SD35, prompt__text=f.PROMPT, negative__text="blurry",
               schedule__steps=3, guidance__scale=5.0)  # fmt: skip
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    pipe = f.pipeline(folder / f.SD35, text_encoder_3=None, tokenizer_3=None)
    reference = f.reference(pipe, 3, 5.0, 0, negative_prompt="blurry")
    assert (ours - reference).abs().max().item() < TOLERANCE


def test_a_file_without_text_encoders_says_where_to_get_them(root):
    _, files = root
    g = _graph("sd3_txt2img", files["bare"], f.SD35, prompt__text=f.PROMPT, schedule__steps=2)
    result = h.executor().run(g, ["sampler"])
    message = " ".join(str(e) for e in result.errors.values())
    assert result.status == "error"
    assert "sd35-tiny-bare.safetensors holds none" in message and "Triple CLIP" in message
    assert "text_encoder, text_encoder_2" in message


def test_the_family_and_skeleton_come_from_the_header(root):
    _, files = root
    assert checkpoints.detect_layout(files["flux"]) == "flux-dev"
    assert checkpoints.detect_layout(files["sd3"]).startswith("sd3")
    assert checkpoints.family_of(files["flux"]) == "flux"
    assert checkpoints.family_of(files["sd3"]) == "sd3"
    kinds = sorted((e.kind, e.prefix) for e in components.text_encoders_in(files["sd3"]))
    assert kinds == [
        ("clip", "text_encoders.clip_g.transformer."),
        ("clip", "text_encoders.clip_l.transformer."),
        ("t5", "text_encoders.t5xxl.transformer."),
    ]


def test_a_diffusion_model_alone_in_checkpoints_is_refused_with_the_loader_to_use(root, tmp_path):
    folder, files = root
    from safetensors import safe_open

    alone = folder / "checkpoints" / "transformer-only.safetensors"
    with safe_open(str(files["flux"]), framework="pt") as handle:
        state = {k: handle.get_tensor(k) for k in handle.keys() if k.startswith("model.diffusion_model.")}  # noqa: SIM118
    dit._save(state, alone)
    g = _graph("flux_txt2img", alone, f.FLUX, prompt__text="x")
    result = h.executor().run(g, ["model"])
    message = " ".join(str(e) for e in result.errors.values())
    assert result.status == "error"
    assert "transformer-only.safetensors: holds no VAE" in message and "Load Diffusion Model" in message
