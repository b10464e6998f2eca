"""DeepCache on tiny random UNets: exact when nothing is cached, honest skip counts, CFG and ControlNet."""

from __future__ import annotations

import pytest
import torch

from app.runtime.step_cache import AdaptiveCache, CacheError, DeepCache, open_denoiser
from app.runtime.step_cache.adaptive import calibrate
from app.runtime.step_cache.deepcache import UNetWalk
from tests.runtime.cache_models import (
    inputs,
    model_state,
    one_torch_thread,
    plain,
    sample,
    scheduler,
    tiny_controlnet,
    tiny_sdxl_unet,
    tiny_unet,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def data():
    return inputs()


def test_full_walk_is_the_unets_own_forward_bit_for_bit(unet, data):
    latents, cond, _ = data
    walk = UNetWalk(unet)
    with torch.no_grad():
        for size in ((16, 16), (14, 18)):  # an odd size exercises the upsample_size path
            x = torch.randn(1, 4, *size)
            reference = unet(x, 321, cond).sample
            for branch in range(walk.skips):
                assert torch.equal(walk.full(branch, x, 321, cond)[0], reference)


def test_full_walk_follows_freeu_when_it_is_enabled(data):
    latents, cond, _ = data
    unet = tiny_unet()
    unet.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    walk = UNetWalk(unet)
    with torch.no_grad():
        reference = unet(latents, 321, cond).sample
        assert torch.equal(walk.full(1, latents, 321, cond)[0], reference)
        unet.disable_freeu()
        assert not torch.equal(unet(latents, 321, cond).sample, reference)  # FreeU did change the output


def test_full_walk_matches_an_sdxl_shaped_unet_with_added_conditioning():
    unet = tiny_sdxl_unet()
    x, text = torch.randn(2, 4, 16, 16), torch.randn(2, 5, 64)
    added = {"text_embeds": torch.randn(2, 32), "time_ids": torch.randn(2, 6)}
    walk = UNetWalk(unet)
    with torch.no_grad():
        reference = unet(x, 10, text, added_cond_kwargs=added).sample
        for branch in range(walk.skips):
            prediction, feature = walk.full(branch, x, 10, text, added_cond_kwargs=added)
            assert torch.equal(prediction, reference)
            # On the same input, the shallow branch plus the cached feature rebuilds the full output.
            shallow = walk.shallow(branch, feature, x, 10, text, added_cond_kwargs=added)
            torch.testing.assert_close(shallow, reference, rtol=0, atol=1e-6)


def test_interval_one_equals_the_uncached_loop_exactly(unet, data):
    latents, cond, uncond = data
    reference = sample(plain(unet), latents, cond, uncond)
    for policy in (DeepCache(interval=1), DeepCache(interval=1, branch=3, schedule="non_uniform")):
        with open_denoiser(policy, unet, 10) as denoise:
            assert torch.equal(sample(denoise, latents, cond, uncond), reference)
        assert denoise.skipped_blocks == 0 and denoise.total_blocks == 10 * 12


def test_caching_changes_the_output_but_stays_close_on_a_smooth_model(unet, data):
    latents, cond, uncond = data
    reference = sample(plain(unet), latents, cond, uncond)
    errors = []
    for interval in (2, 3, 5):
        with open_denoiser(DeepCache(interval=interval), unet, 10) as denoise:
            out = sample(denoise, latents, cond, uncond)
        errors.append(((out - reference).norm() / reference.norm()).item())
    assert all(0 < e < 0.15 for e in errors), errors
    # A deeper branch recomputes more, so it stays closer.
    with open_denoiser(DeepCache(interval=3, branch=3), unet, 10) as denoise:
        deep = sample(denoise, latents, cond, uncond)
    assert 0 < ((deep - reference).norm() / reference.norm()).item() < errors[1]


# Tiny UNet, per call: down = resnet + downsampler, resnet + attention; mid 1; up = 2 x (resnet + attention)
# + upsampler, 2 resnets -> 12 blocks. A shallow pass at branch b runs 1, 3, 7, 11 of them.
@pytest.mark.parametrize("branch,shallow", [(0, 1), (1, 3), (2, 7), (3, 11)])
@pytest.mark.parametrize("interval,schedule", [(2, "uniform"), (3, "non_uniform"), (4, "uniform")])
def test_skipped_block_counts_match_the_schedule(unet, data, branch, shallow, interval, schedule):
    latents, cond, uncond = data
    policy = DeepCache(interval=interval, branch=branch, schedule=schedule, start=1, end=1)
    cached_steps = 12 - len(policy.full_steps(12))
    with open_denoiser(policy, unet, 12) as denoise:
        sample(denoise, latents, cond, uncond, steps=12, sequential=True)  # two passes per step
    assert denoise.total_blocks == 12 * 2 * 12
    assert denoise.skipped_blocks == cached_steps * 2 * (12 - shallow)


def test_cfg_as_one_batch_or_two_passes_gives_the_same_cached_result(unet, data):
    latents, cond, uncond = data
    results = []
    for sequential in (False, True):
        with open_denoiser(DeepCache(interval=3), unet, 10) as denoise:
            results.append(sample(denoise, latents, cond, uncond, sequential=sequential))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-4)


def test_controlnet_residuals_flow_through_full_and_shallow_steps():
    unet = tiny_unet(layers=2)
    controlnet = tiny_controlnet(unet)
    latents, cond, uncond = inputs(size=16)
    hint = torch.rand(1, 3, 32, 32)
    reference = sample(plain(unet), latents, cond, uncond, controlnet=controlnet, hint=hint)
    without = sample(plain(unet), latents, cond, uncond)
    assert (reference - without).abs().max() > 1e-3  # the residuals matter
    with open_denoiser(DeepCache(interval=1), unet, 10) as denoise:
        assert torch.equal(
            sample(denoise, latents, cond, uncond, controlnet=controlnet, hint=hint), reference
        )
    with open_denoiser(DeepCache(interval=3, branch=2), unet, 10) as denoise:
        cached = sample(denoise, latents, cond, uncond, controlnet=controlnet, hint=hint)
    assert denoise.skipped_blocks > 0
    error = ((cached - reference).norm() / reference.norm()).item()
    assert 0 < error < 0.15
    # The shallow residuals are used on cached steps: dropping them would move the result.
    x, t = torch.randn(2, 4, 16, 16), 500
    text = torch.cat([uncond, cond])
    with torch.no_grad():
        down, mid = controlnet(x, t, text, controlnet_cond=torch.cat([hint, hint]), return_dict=False)
        walk = UNetWalk(unet)
        full, feature = walk.full(
            2, x, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid
        )
        shallow = walk.shallow(
            2, feature, x, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid
        )
        torch.testing.assert_close(shallow, full, rtol=0, atol=1e-6)


def test_the_model_is_unchanged_after_a_cached_run_and_after_a_failing_one(unet, data):
    latents, cond, uncond = data
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        before_out = unet(x, 100, cond).sample
    before = model_state(unet)
    with open_denoiser(DeepCache(interval=3), unet, 10) as denoise:
        sample(denoise, latents, cond, uncond)

    def explode(*args, **kwargs):
        raise RuntimeError("cancelled mid-loop")

    with pytest.raises(RuntimeError, match="cancelled"):
        with open_denoiser(DeepCache(interval=2), unet, 10) as denoise:
            denoise(0, x, 900, cond)
            denoise(1, x, 800, cond)
            explode()
    assert not denoise.features  # cached tensors are dropped on exit
    with pytest.raises(CacheError, match="after its sampling loop"):
        denoise(2, x, 700, cond)
    after = model_state(unet)
    assert after[1] == before[1]
    assert all(torch.equal(after[0][k], v) for k, v in before[0].items())
    with torch.no_grad():
        assert torch.equal(unet(x, 100, cond).sample, before_out)


def test_refused_inputs_and_models_raise_cache_errors(unet, data):
    _, cond, _ = data
    x = torch.randn(1, 4, 16, 16)
    with pytest.raises(CacheError, match="branch must be between 0 and 3"):
        with open_denoiser(DeepCache(branch=4), unet, 10):
            pass
    with pytest.raises(CacheError, match="UNet2DConditionModel"):
        with open_denoiser(DeepCache(), torch.nn.Linear(2, 2), 10):
            pass
    with open_denoiser(DeepCache(), unet, 10) as denoise:
        with pytest.raises(CacheError, match="T2I-Adapter"):
            denoise(0, x, 1, cond, down_intrablock_additional_residuals=[x])
        with pytest.raises(CacheError, match="outside the loop"):
            denoise(10, x, 1, cond)


def test_adaptive_calibration_makes_a_plan_that_runs(unet, data):
    latents, cond, uncond = data
    ddim = scheduler(10)
    policy = calibrate(
        unet,
        ddim.timesteps,
        latents,
        cond,
        step=lambda eps, t, x: ddim.step(eps, t, x).prev_sample,
        budget=4,
    )
    assert isinstance(policy, AdaptiveCache)
    assert len(policy.plan) == 4 and policy.plan[0] == 0 and policy.plan_steps == 10
    again = calibrate(
        unet, ddim.timesteps, latents, cond, step=lambda eps, t, x: ddim.step(eps, t, x).prev_sample, budget=4
    )
    assert again == policy  # deterministic: a saved plan reproduces
    reference = sample(plain(unet), latents, cond, uncond)
    with open_denoiser(policy, unet, 10) as denoise:
        out = sample(denoise, latents, cond, uncond)
    assert denoise.skipped_blocks == 6 * 11
    assert 0 < ((out - reference).norm() / reference.norm()).item() < 0.15
