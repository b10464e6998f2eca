"""Every DiT Step Cache strategy leaves the loaded transformer as it was: weights, attention processors, block
forwards and hooks, after a loop that ends and after one that raises in the middle; the next plain call equals
the one before."""

from __future__ import annotations

import pytest
import torch

from app.runtime.families import Flux, StableDiffusion3
from app.runtime.step_cache import AdaptiveCache, FirstBlockCache, MagCache, TaylorSeer, open_denoiser
from app.runtime.step_cache.blocks import blocks_of
from app.runtime.step_cache.policy import DeltaDiT, RegionAdaptive
from tests.nodes import flow_helpers as f

STEPS = 4


@pytest.fixture(scope="module")
def models(dit_root):
    return {
        "sd3": f.pipeline(dit_root / f.SD3).transformer,
        "flux": f.pipeline(dit_root / f.FLUX).transformer,
    }


def _policies(count: int) -> dict[str, object]:
    return {
        "delta_dit": DeltaDiT(boundary=2, blocks=1, interval=2),
        "ras": RegionAdaptive(ratio=0.5, start=1, interval=3),
        "first_block": FirstBlockCache(threshold=5.0),
        "taylorseer": TaylorSeer(interval=2, start=1),
        "magcache": MagCache(threshold=0.5, interval=2, ratios=(1.0, 0.99, 0.98, 0.97)),
        "adaptive": AdaptiveCache(plan=(0,), plan_steps=STEPS, blocks=((0, 2),) * count),
    }


def _call(family: str, model):
    """(the family's forward, its inputs for one call): latents, timestep and text for the tiny model."""
    config, gen = model.config, torch.Generator().manual_seed(1)
    if family == "sd3":
        x = torch.randn(1, config.in_channels, 8, 8, generator=gen)
        kwargs = {"pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=gen)}
        return (
            StableDiffusion3.forward,
            x,
            torch.randn(1, 5, config.joint_attention_dim, generator=gen),
            kwargs,
        )
    x = torch.randn(1, config.in_channels // 4, 8, 8, generator=gen)
    inputs = {"pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=gen),
              "guidance": torch.full([1], 3.5)}  # fmt: skip
    kwargs = Flux.denoiser_kwargs(inputs)
    return Flux.forward, x, torch.randn(1, 5, config.joint_attention_dim, generator=gen), kwargs


def _snapshot(model) -> dict:
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "processors": {k: type(v) for k, v in model.attn_processors.items()},
        "forwards": [n for n, m in model.named_modules() if "forward" in vars(m)],
        "hooks": [(n, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()],
        "diffusers": [
            n
            for n, m in model.named_modules()
            if getattr(m, "_diffusers_hook", None) is not None and m._diffusers_hook.hooks
        ],  # fmt: skip
    }


def _same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in ("processors", "forwards", "hooks", "diffusers"):
        assert before[key] == after[key], key
    assert all(torch.equal(before["weights"][k], v) for k, v in after["weights"].items())


@pytest.mark.parametrize("family", ["sd3", "flux"])
@pytest.mark.parametrize("strategy", sorted(_policies(1)))
def test_the_transformer_is_left_as_it_was_after_a_loop_and_after_a_failing_one(models, family, strategy):
    model = models[family]
    forward, x, text, kwargs = _call(family, model)
    policy = _policies(len(blocks_of(model)))[strategy]
    before = _snapshot(model)
    with torch.no_grad():
        plain = forward(model, x, torch.tensor([500.0]), encoder_hidden_states=text, **kwargs)
        with open_denoiser(policy, model, STEPS, forward) as denoise:
            for step in range(STEPS):
                denoise(step, x * (1 - 0.2 * step), torch.tensor([900.0 - 200 * step]), text, **kwargs)
        _same(before, _snapshot(model))
        calls = {"n": 0}

        def fail_on_the_third_call(module, args):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("out of memory (simulated)")

        handle = blocks_of(model)[-1].register_forward_pre_hook(fail_on_the_third_call)
        try:
            with (
                pytest.raises(RuntimeError, match="simulated"),
                open_denoiser(policy, model, STEPS, forward) as denoise,
            ):
                for step in range(STEPS):
                    denoise(step, x * (1 - 0.2 * step), torch.tensor([900.0 - 200 * step]), text, **kwargs)
        finally:
            handle.remove()
        assert calls["n"] == 3  # the failure came from inside the cached loop
        _same(before, _snapshot(model))
        again = forward(model, x, torch.tensor([500.0]), encoder_hidden_states=text, **kwargs)
    assert torch.equal(again, plain)
