"""The tiny-shapes-flux trainer: its few weighted pad tokens are the pipeline's 512-token T5 input, its target
is the teacher's two-pass CFG velocity, and a few steps on a tiny config resume and write a folder FluxPipeline
loads."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from app.runtime import tokenizers
from app.runtime.families.flux import pack
from tools import train_tiny_flux as train
from tools.tiny_shapes_data import all_combinations, build_tokenizer, caption

TINY = replace(train.Config(), steps=4, batch=4, pool=64, warmup=2, double=1, single=1)


@pytest.fixture(scope="module")
def teacher():
    torch.set_num_threads(1)
    transformer, clips, clip_l = train.teacher_models()
    return transformer, clips, clip_l, train.caption_table(build_tokenizer(), clips, clip_l)


def test_the_collapsed_padding_equals_the_pipelines_512_t5_tokens(teacher):
    *_, table = teacher
    torch.manual_seed(0)
    transformer, t5 = train.make_transformer(TINY), train.make_t5(TINY)
    with torch.no_grad():
        for parameter in transformer.parameters():  # a fresh model's zero layers would hide a bug
            parameter.add_(torch.randn_like(parameter) * 0.05)
    rows = torch.tensor([0, 41, 89, 90])  # 90: the empty caption
    texts = [caption(*all_combinations()[r]) for r in rows[:3].tolist()] + [""]
    ids = tokenizers.t5()(texts, padding="max_length", max_length=512, return_tensors="pt").input_ids
    noisy, sigma, guidance = torch.randn(4, 4, 16, 16), torch.rand(4), torch.rand(4) * 5
    with torch.no_grad():
        collapsed = train.student_velocity(transformer, t5, table, rows, noisy, sigma, guidance)
        full = transformer(
            hidden_states=pack(noisy),
            encoder_hidden_states=t5(ids).last_hidden_state,
            pooled_projections=table["flux_pooled"][rows],
            timestep=sigma,
            guidance=guidance,
            txt_ids=torch.zeros(512, 3),
            img_ids=train.image_ids("cpu"),
        ).sample
    assert table["t5_ids"].shape[1] < 16
    assert (collapsed - full).abs().max() < 1e-5 < full.abs().max()


def test_the_target_is_the_teachers_cfg_velocity(teacher):
    """Against the SD3 teacher called as its pipeline calls it: 77 CLIP tokens + 256 zero T5 tokens, two passes."""
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    transformer, clips, _, table = teacher
    rows, noisy = torch.tensor([3, 90]), torch.randn(2, 4, 16, 16)
    sigma, guidance = torch.tensor([0.9, 0.3]), torch.tensor([3.5, 1.0])
    target = train.teacher_velocity(transformer, table, rows, noisy, sigma, guidance)
    texts = [caption(*all_combinations()[3]), "", ""]
    ids = build_tokenizer()(texts, padding="max_length", return_tensors="pt").input_ids
    transformer.set_attn_processor(JointAttnProcessor2_0())
    try:
        with torch.no_grad():
            context, pooled = train.sd3.encode_text(clips, ids)
            cond = transformer(hidden_states=noisy, encoder_hidden_states=context[:2],
                               pooled_projections=pooled[:2], timestep=sigma * 1000).sample  # fmt: skip
            uncond = transformer(hidden_states=noisy, encoder_hidden_states=context[2:].expand(2, -1, -1),
                                 pooled_projections=pooled[2:].expand(2, -1), timestep=sigma * 1000).sample  # fmt: skip
    finally:
        transformer.set_attn_processor(train.sd3.OneZeroForMany())
    expected = pack(uncond + guidance.view(-1, 1, 1, 1) * (cond - uncond))
    assert (target - expected).abs().max() < 1e-4 < expected.abs().max()


def test_trains_resumably_and_writes_a_folder_flux_pipeline_loads(tmp_path):
    from diffusers import FluxPipeline

    torch.set_num_threads(1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    half = train.train(replace(TINY, steps=2), workdir, 600, 600, log=lambda m: None)
    state = train.train(TINY, workdir, 600, 600, log=lambda m: None)  # resumes at step 2
    assert half["step"] == 2 and state["step"] == TINY.steps
    assert not torch.equal(
        half["ema"]["transformer"]["proj_out.weight"], state["ema"]["transformer"]["proj_out.weight"]
    )
    pipe = FluxPipeline.from_pretrained(train.export(TINY, state, tmp_path / "flux"), local_files_only=True)
    assert pipe.transformer.config.guidance_embeds and pipe.vae.config.shift_factor == 0.0
    image = pipe("a red circle on a blue background", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0), output_type="np").images  # fmt: skip
    assert image.shape == (1, 64, 64, 3)
