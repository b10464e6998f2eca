"""The tiny-shapes-sd3 trainer: its one-token stand-in for T5's 256 zero tokens is the same model, a few steps on a
tiny config write a folder StableDiffusion3Pipeline loads, and a resumed run continues where it stopped."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tools import train_tiny_sd3 as train
from tools.tiny_shapes_data import build_tokenizer

TINY = replace(train.Config(), steps=4, batch=4, pool=64, warmup=2, layers=2)


def test_one_zero_token_with_its_weight_equals_the_pipelines_256():
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    transformer, clip_l, clip_g = train._models(TINY, tokenizer)
    for module in (transformer, clip_l, clip_g):
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.add_(
                    torch.randn_like(parameter) * 0.02
                )  # a fresh model's zero layers would hide a bug
    ids = tokenizer(
        ["a red circle on a blue background", ""], padding="max_length", return_tensors="pt"
    ).input_ids
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([500.0, 100.0])
    with torch.no_grad():
        context, pooled = train.encode_text((clip_l, clip_g), ids)
        assert context.shape[1] == 77 + train.T5_TOKENS
        full = transformer(
            hidden_states=x, encoder_hidden_states=context, pooled_projections=pooled, timestep=t
        ).sample
        transformer.set_attn_processor(train.OneZeroForMany())
        context, pooled = train.encode_text((clip_l, clip_g), ids, zeros=1)
        one = transformer(
            hidden_states=x, encoder_hidden_states=context, pooled_projections=pooled, timestep=t
        ).sample
    assert (full - one).abs().max() < 1e-5 < full.abs().max()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    workdir = tmp_path_factory.mktemp("sd3")
    half = train.train(replace(TINY, steps=2), workdir, 600, 600, log=lambda m: None)
    state = train.train(TINY, workdir, 600, 600, log=lambda m: None)  # resumes at step 2
    return workdir, half, state


def test_trains_resumably_and_writes_a_folder_the_sd3_pipeline_loads(trained, tmp_path):
    from diffusers import StableDiffusion3Pipeline

    workdir, half, state = trained
    assert half["step"] == 2 and state["step"] == TINY.steps
    out = train.export(TINY, state, tmp_path / "tiny-shapes-sd3")
    pipe = StableDiffusion3Pipeline.from_pretrained(out, local_files_only=True)
    assert pipe.vae.config.shift_factor == 0.0
    ids = pipe.tokenizer_3(
        ["a red circle"], padding="max_length", max_length=256, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        assert not pipe.text_encoder_3(ids)[0].any()  # the silent T5: zeros, as if there were none
    image = pipe("a red circle on a blue background", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0), output_type="np").images  # fmt: skip
    assert image.shape == (1, 64, 64, 3)
