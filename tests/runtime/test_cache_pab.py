"""Pyramid Attention Broadcast through our adapter on a tiny UNet: it skips what it says, and leaves no trace."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor

from app.runtime.step_cache import PyramidBroadcast, open_denoiser
from tests.runtime.cache_models import inputs, model_state, one_torch_thread, plain, sample, tiny_unet


class CountingProcessor(AttnProcessor):
    """The plain attention processor, counting how often attention really is computed."""

    calls = 0

    def __call__(self, *args, **kwargs):
        CountingProcessor.calls += 1
        return super().__call__(*args, **kwargs)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def unet():
    unet = tiny_unet()
    unet.set_attn_processor(CountingProcessor())
    return unet


def _attention_modules(unet) -> int:
    return sum(1 for name, _ in unet.named_modules() if name.endswith((".attn1", ".attn2")))


def test_pab_skips_attention_as_counted_and_as_scheduled(unet):
    latents, cond, uncond = inputs()
    CountingProcessor.calls = 0
    reference = sample(plain(unet), latents, cond, uncond)
    plain_calls = CountingProcessor.calls
    assert plain_calls == 10 * _attention_modules(unet) == 80

    policy = PyramidBroadcast(self_interval=2, cross_interval=4, start=2, end=2)
    CountingProcessor.calls = 0
    with open_denoiser(policy, unet, 10) as denoise:
        out = sample(denoise, latents, cond, uncond)
    # Steps 2..7 may broadcast: self-attention recomputes on even steps (skips 3, 5, 7), cross-attention
    # on multiples of 4 (skips 2, 3, 5, 6, 7); the tiny UNet has 4 transformer blocks.
    assert denoise.skipped_blocks == 4 * 3 + 4 * 5
    assert denoise.total_blocks == plain_calls
    assert CountingProcessor.calls == plain_calls - denoise.skipped_blocks
    assert not torch.equal(out, reference)
    assert ((out - reference).norm() / reference.norm()).item() < 0.2


def test_each_cfg_pass_keeps_its_own_attention_cache(unet):
    latents, cond, uncond = inputs()
    policy = PyramidBroadcast(self_interval=3, cross_interval=3, start=1, end=1)
    results = []
    for sequential in (False, True):
        with open_denoiser(policy, unet, 10) as denoise:
            results.append(sample(denoise, latents, cond, uncond, sequential=sequential))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-4)
    # Steps 1..8 may broadcast and recompute at 3 and 6: two passes x 8 attention modules x 6 skips.
    assert denoise.skipped_blocks == 2 * 8 * 6


def test_hooks_are_gone_after_the_loop_even_when_it_fails(unet):
    latents, cond, _ = inputs()
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        before_out = unet(x, 100, cond).sample
    before = model_state(unet)
    with open_denoiser(PyramidBroadcast(), unet, 10) as denoise:
        assert model_state(unet)[1] != before[1]  # hooked while the loop runs
        sample(denoise, latents, cond)
    assert model_state(unet)[1] == before[1]
    with pytest.raises(RuntimeError, match="cancelled"):
        with open_denoiser(PyramidBroadcast(start=0), unet, 10) as denoise:
            denoise(0, x, 900, cond)
            raise RuntimeError("cancelled mid-loop")
    after = model_state(unet)
    assert after[1] == before[1]
    assert all(torch.equal(after[0][k], v) for k, v in before[0].items())
    with torch.no_grad():
        assert torch.equal(unet(x, 100, cond).sample, before_out)
    # And a second PAB run on the same model works (no hook left registered under PAB's name).
    with open_denoiser(PyramidBroadcast(), unet, 10) as denoise:
        sample(denoise, latents, cond)
    assert denoise.skipped_blocks > 0
