"""Smoke test of the tiny-shapes trainer: a few steps on a tiny config write a folder diffusers loads, and a
resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tools import train_tiny_shapes as train
from tools.tiny_shapes_data import GRAMMAR_WORDS, build_tokenizer, caption, random_batch


def quiet(_message: str) -> None:
    return None


def test_every_grammar_word_is_one_token_and_other_text_still_tokenizes() -> None:
    tokenizer = build_tokenizer()
    for word in GRAMMAR_WORDS:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    ids = tokenizer(caption("green", "triangle", "yellow"), add_special_tokens=False).input_ids
    assert len(ids) == 7
    other = tokenizer("Grüne Katze, 42!", add_special_tokens=False).input_ids
    assert len(other) > 3 and tokenizer.unk_token_id not in other
    assert tokenizer.decode(other).replace(" ", "") == "grünekatze,42!"


def test_training_images_follow_their_labels() -> None:
    from nodes.shapes import COLOURS

    images, samples = random_batch(np.random.default_rng(0), 8)
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.uint8
    for image, sample in zip(images, samples, strict=True):
        assert sample.colour != sample.background
        corner = image[0, 0].astype(int)
        assert np.abs(corner - np.array(COLOURS[sample.background])).max() <= 12


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    workdir = tmp_path_factory.mktemp("train")
    out = workdir / "model"
    summary = train.run(train.TINY, workdir, out, max_minutes=10, ckpt_minutes=10, log=quiet)
    return workdir, out, summary


def test_writes_a_folder_stable_diffusion_pipeline_loads_unchanged(trained) -> None:
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    workdir, out, summary = trained
    assert summary["unet_step"] == train.TINY.unet_steps
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    config = pipe.scheduler.config
    assert (config.beta_schedule, config.beta_start, config.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert config.prediction_type == train.TINY.prediction
    assert pipe.vae.config.scaling_factor != 1.0  # measured from the trained VAE's latents
    state = torch.load(workdir / "unet.pt", weights_only=False)
    for name, value in pipe.unet.state_dict().items():
        torch.testing.assert_close(value, state["ema"]["unet"][name])
    image = pipe(
        "a red circle on a blue background",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


def test_resumed_training_ends_where_an_uninterrupted_run_does(trained, tmp_path) -> None:
    straight_dir, _, _ = trained
    half = replace(train.TINY, unet_steps=train.TINY.unet_steps // 2)
    train.run(half, tmp_path, None, max_minutes=10, ckpt_minutes=10, log=quiet)
    assert torch.load(tmp_path / "unet.pt", weights_only=False)["step"] == half.unet_steps
    lines: list[str] = []
    summary = train.run(train.TINY, tmp_path, None, max_minutes=10, ckpt_minutes=10, log=lines.append)
    assert summary["unet_step"] == train.TINY.unet_steps
    assert not any(line.startswith("vae step") for line in lines)  # the finished VAE stage is not redone
    resumed = torch.load(tmp_path / "unet.pt", weights_only=False)
    straight = torch.load(straight_dir / "unet.pt", weights_only=False)
    for name, value in straight["unet"].items():
        torch.testing.assert_close(resumed["unet"][name], value)
    for name, value in straight["ema"]["text"].items():
        torch.testing.assert_close(resumed["ema"]["text"][name], value)


def test_the_training_pool_is_the_same_whatever_the_number_of_drawing_workers(tmp_path) -> None:
    from tools.tiny_shapes_model import make_vae

    cfg = replace(train.TINY, pool=600)  # three chunks of up to 256
    vae = make_vae(cfg).eval()
    vae.register_to_config(scaling_factor=0.5)
    pools = []
    for workers in (1, 2):
        (tmp_path / str(workers)).mkdir()
        runtime = train.Runtime(workers=workers)
        pools.append(train.encode_pool(vae, build_tokenizer(), cfg, tmp_path / str(workers), runtime, quiet))
    assert pools[0]["mean"].shape == (600, 4, 16, 16) and pools[0]["ids"].shape == (600, 77)
    for key in ("mean", "std", "ids"):
        torch.testing.assert_close(pools[0][key], pools[1][key], rtol=0, atol=0)


def test_init_starts_the_unet_and_text_encoder_from_a_folder(trained, tmp_path) -> None:
    from safetensors.torch import load_file

    _, folder, _ = trained
    (tmp_path / "vae.pt").write_bytes((trained[0] / "vae.pt").read_bytes())
    start = replace(train.TINY, unet_steps=0)
    train.run(
        start, tmp_path, None, max_minutes=10, ckpt_minutes=10, log=quiet, rt=train.Runtime(init=folder)
    )
    state = torch.load(tmp_path / "unet.pt", weights_only=False)
    for name, value in load_file(folder / "unet" / "diffusion_pytorch_model.safetensors").items():
        torch.testing.assert_close(state["unet"][name], value)
    for name, value in load_file(folder / "text_encoder" / "model.safetensors").items():
        torch.testing.assert_close(state["ema"]["text"][name], value)
