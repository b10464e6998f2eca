"""Step Cache on diffusion transformers through diffusers' hooks (first_block, taylorseer, magcache): a
zero threshold equals no cache, first_block equals FluxPipeline with the same hook enabled, skipped
blocks are reported, the shared model is left without hooks, and what a model cannot take is refused."""

from __future__ import annotations

import json

import pytest
import torch

from app.engine.plan import validate
from app.graph.model import Edge, Node
from app.registry import default_registry
from tests.nodes import diffusion_helpers as h
from tests.nodes import flow_helpers as f

STEPS = 8


@pytest.fixture(scope="module")
def root(dit_root):
    return dit_root


def _graph(name, model, **cache):
    g = f.graph(name, model, prompt__text=f.PROMPT, schedule__steps=STEPS)
    if cache:
        g.add_node(Node("cache", "sampling.cache", params=cache))
        g.connect(Edge("model", "model", "cache", "model"))
        g.disconnect(g.input_edge("sampler", "model"))
        g.connect(Edge("cache", "model", "sampler", "model"))
    return g


def _run(g):
    events: list[dict] = []
    latents = h.run(h.executor(), g, events=events).outputs["sampler"]["latent"].samples
    finished = next(e for e in events if e.get("event") == "finished" and e.get("node") == "sampler")
    return latents, finished.get("skipped_blocks", 0), finished.get("cache_total_blocks", 0)


def _no_hooks_left(model) -> bool:
    registries = [m._diffusers_hook for m in model.modules() if hasattr(m, "_diffusers_hook")]
    return all(not r.hooks for r in registries) and all(not m._forward_hooks for m in model.modules())


def test_first_block_at_zero_equals_no_cache_and_skips_above_it(root):
    from app.runtime.models import manager

    plain, skipped, _ = _run(_graph("flux_txt2img", f.FLUX))
    zero, skipped, total = _run(_graph("flux_txt2img", f.FLUX, strategy="first_block", threshold=0.0))
    assert torch.equal(zero, plain) and skipped == 0 and total == STEPS * 3
    cached, skipped, total = _run(_graph("flux_txt2img", f.FLUX, strategy="first_block", threshold=0.3))
    assert 0 < skipped < total and 0 < (cached - plain).abs().max() < 0.2
    loaded = manager().load(manager().loaded()[-1], torch.device("cpu"))
    assert _no_hooks_left(loaded.denoiser)
    again, _, _ = _run(_graph("flux_txt2img", f.FLUX))
    assert torch.equal(again, plain)


def test_first_block_equals_flux_pipeline_with_the_same_diffusers_hook(root):
    from diffusers.hooks import FirstBlockCacheConfig

    ours, skipped, _ = _run(_graph("flux_txt2img", f.FLUX, strategy="first_block", threshold=0.3))
    pipe = f.pipeline(root / f.FLUX)
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.3))
    reference = f.reference(pipe, STEPS, 3.5, 0)
    assert skipped > 0 and (ours - reference).abs().max() < 1e-5


@pytest.mark.parametrize(
    ("name", "model", "cache"),
    [
        ("flux_txt2img", f.FLUX, {"strategy": "taylorseer", "interval": 3, "start": 2}),
        ("sd3_txt2img", f.SD3, {"strategy": "taylorseer", "interval": 3, "start": 2, "order": 2}),
        ("flux_txt2img", f.FLUX, {"strategy": "magcache", "threshold": 0.5, "interval": 3}),
    ],
)
def test_taylorseer_and_magcache_skip_blocks_and_stay_near_the_plain_result(root, name, model, cache):
    plain, _, _ = _run(_graph(name, model))
    cached, skipped, total = _run(_graph(name, model, **cache))
    assert 0 < skipped < total
    assert torch.isfinite(cached).all() and (cached - plain).abs().max() < 0.5


def test_what_a_model_cannot_take_is_refused_in_one_sentence(root):
    registry = default_registry()
    problems = [str(p) for p in validate(_graph("flux_txt2img", f.FLUX, strategy="deepcache"), registry)]
    assert any("deepcache caches UNet features; a tiny-flux model has no UNet" in p for p in problems)
    g = h.graph()
    g.add_node(Node("cache", "sampling.cache", params={"strategy": "first_block"}))
    g.connect(Edge("model", "model", "cache", "model"))
    problems = [str(p) for p in validate(g, registry)]
    assert any("first_block caches transformer blocks; a tiny-oracle model is a UNet" in p for p in problems)


def test_hooks_reach_a_model_whose_hook_registry_existed_before(root):
    """A pipeline's cache_context (or any hook) creates the registry first; ours must still set contexts."""
    from diffusers.hooks import HookRegistry

    from app.runtime.families import Flux
    from app.runtime.step_cache import FirstBlockCache, open_denoiser

    transformer = f.pipeline(root / f.FLUX).transformer
    with transformer.cache_context("cond"):
        pass
    HookRegistry.check_if_exists_or_initialize(transformer)._get_child_registries()
    inputs = Flux.denoiser_kwargs(
        {
            "encoder_hidden_states": torch.zeros(1, 4, 24),
            "pooled_projections": torch.zeros(1, 8),
            "guidance": torch.ones(1),
        }
    )
    with torch.inference_mode(), open_denoiser(FirstBlockCache(0.1), transformer, 2, Flux.forward) as denoise:
        for step in range(2):
            prediction = denoise(step, torch.ones(1, 16, 4, 4), torch.tensor(1000.0 - step), **inputs)
    assert prediction.shape == (1, 16, 4, 4) and denoise.total_blocks == 6
    assert _no_hooks_left(transformer)


@pytest.mark.parametrize(("name", "model"), [("sd3_txt2img", f.SD3), ("flux_txt2img", f.FLUX)])
def test_delta_dit_with_interval_one_equals_no_cache_and_skips_its_plan(root, name, model):
    from app.runtime.models import manager
    from app.runtime.step_cache.policy import DeltaDiT

    plain, _, _ = _run(_graph(name, model))
    loaded = manager().load(manager().loaded()[-1], torch.device("cpu"))
    blocks = [*loaded.denoiser.transformer_blocks, *getattr(loaded.denoiser, "single_transformer_blocks", [])]
    forwards = [vars(block).get("forward") for block in blocks]
    same, skipped, total = _run(_graph(name, model, strategy="delta_dit", interval=1))
    assert torch.equal(same, plain) and skipped == 0
    cached, skipped, total = _run(_graph(name, model, strategy="delta_dit", interval=2, boundary=4, blocks=1))
    policy = DeltaDiT(boundary=4, blocks=1, interval=2)
    passes = total // (STEPS * len(blocks))  # CFG runs as one batched pass or two
    expected = passes * sum(len(policy.reused(step, STEPS, len(blocks))) for step in range(STEPS))
    assert skipped == expected > 0 and total == passes * STEPS * len(blocks)
    assert torch.isfinite(cached).all() and 0 < (cached - plain).abs().max() < 0.5
    assert [vars(block).get("forward") for block in blocks] == forwards  # the blocks' own forward again
    again, _, _ = _run(_graph(name, model))
    assert torch.equal(again, plain)


def test_delta_dit_reuses_the_rear_blocks_early_and_the_front_blocks_late():
    from app.runtime.step_cache.policy import DeltaDiT

    policy = DeltaDiT(boundary=4, blocks=2, interval=2)
    plan = [sorted(policy.reused(step, 8, 6)) for step in range(8)]
    assert plan == [[], [4, 5], [], [4, 5], [], [0, 1], [], [0, 1]]
    assert DeltaDiT(boundary=20, interval=3).reused(4, 8, 6) == frozenset({2, 3, 4, 5})  # 3/4, all early


def test_delta_dit_adds_each_skipped_blocks_delta_from_its_last_computed_call(root):
    """One denoiser on the tiny SD3 transformer against a by-hand loop over its blocks."""
    from app.runtime.families.sd3 import StableDiffusion3
    from app.runtime.step_cache import open_denoiser
    from app.runtime.step_cache.policy import DeltaDiT

    pipe = f.pipeline(root / f.SD3)
    transformer = pipe.transformer
    config = transformer.config
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, config.in_channels, 8, 8, generator=gen)
    text = torch.randn(1, 5, config.joint_attention_dim, generator=gen)
    pooled = torch.randn(1, config.pooled_projection_dim, generator=gen)
    policy = DeltaDiT(boundary=1, blocks=1, interval=2)
    with torch.no_grad(), open_denoiser(policy, transformer, 3, StableDiffusion3.forward) as denoise:
        outs = [denoise(i, x * (1 - 0.1 * i), torch.tensor([900.0 - 300 * i]), text, pooled_projections=pooled)
                for i in range(3)]  # fmt: skip
    assert all("forward" not in vars(b) for b in transformer.transformer_blocks)
    # by hand: step 2 (late stage, second step) reuses block 0's delta from step 1
    captured = {}

    def remember(index):
        def hook(module, args, kwargs, output):
            captured[index] = (kwargs["hidden_states"], kwargs["encoder_hidden_states"], output)

        return hook

    handles = [
        b.register_forward_hook(remember(i), with_kwargs=True)
        for i, b in enumerate(transformer.transformer_blocks)
    ]
    with torch.no_grad():
        StableDiffusion3.forward(transformer, x * 0.9, torch.tensor([600.0]), encoder_hidden_states=text,
                                 pooled_projections=pooled)  # fmt: skip
        step1 = {i: (h_in, t_in, out) for i, (h_in, t_in, out) in captured.items()}
        first = transformer.transformer_blocks[0]
        hidden_delta = step1[0][2][1] - step1[0][0]
        text_delta = step1[0][2][0] - step1[0][1]

        def replaced(*args, **kwargs):
            return kwargs["encoder_hidden_states"] + text_delta, kwargs["hidden_states"] + hidden_delta

        first.forward = replaced
        try:
            expected = StableDiffusion3.forward(transformer, x * 0.8, torch.tensor([300.0]),
                                                encoder_hidden_states=text, pooled_projections=pooled)  # fmt: skip
        finally:
            del first.forward
            for handle in handles:
                handle.remove()
    assert (outs[2] - expected).abs().max() < 1e-5
    assert (outs[2] - outs[1]).abs().max() > 0


def test_adaptive_on_a_dit_calibrates_a_plan_per_block_that_reproduces_when_pasted(root):
    from app.runtime.step_cache.policy import AdaptiveCache

    plain, _, _ = _run(_graph("sd3_txt2img", f.SD3))
    g = _graph("sd3_txt2img", f.SD3, strategy="adaptive", interval=2, steps=STEPS)
    events: list[dict] = []
    result = h.run(h.executor(), g, events=events)
    cached = result.outputs["sampler"]["latent"].samples
    reported = next(e for e in events if e.get("event") == "finished" and e.get("node") == "cache")["plan"]
    finished = next(e for e in events if e.get("event") == "finished" and e.get("node") == "sampler")
    plans = [tuple(int(s) for s in part.split(",")) for part in reported.split("|")]
    blocks = len(plans)
    assert blocks >= 2 and all(p[0] == 0 and len(p) == STEPS // 2 for p in plans)
    policy = AdaptiveCache(plan=(0,), plan_steps=STEPS, blocks=tuple(plans))
    passes = finished["cache_total_blocks"] // (STEPS * blocks)
    assert (
        finished["skipped_blocks"]
        == passes * sum(len(policy.reused(s, STEPS, blocks)) for s in range(STEPS))
        > 0
    )
    assert torch.isfinite(cached).all() and 0 < (cached - plain).abs().max() < 0.5
    pasted, skipped, _ = _run(_graph("sd3_txt2img", f.SD3, strategy="adaptive", steps=STEPS, plan=reported))
    assert torch.equal(pasted, cached) and skipped == finished["skipped_blocks"]
    wrong = _graph("sd3_txt2img", f.SD3, strategy="adaptive", steps=STEPS, plan="0,2|0,3|0,1|0,4|0,5|0,6|0,7")
    result = h.executor().run(wrong, ["sampler"])
    assert "the plan has 7 block plans but the model has" in result.errors["sampler"]


@pytest.mark.parametrize(
    ("graph", "model", "entry", "processor"),
    [
        ("sd3_txt2img", f.SD3, "pos_embed", "JointAttnProcessor2_0"),
        ("flux_txt2img", f.FLUX, "x_embedder", "FluxAttnProcessor"),  # rotary positions kept through the cut
    ],
)
def test_ras_with_every_token_equals_no_cache_and_a_quarter_skips_the_rest(
    root, graph, model, entry, processor
):
    """Every token active equals no cache exactly; a quarter skips three quarters of the blocks (Flux: double
    and single) at the cached steps; the model's own processors and hooks are back after the run."""
    from app.runtime.models import manager

    plain, _, _ = _run(_graph(graph, model))
    everything, skipped, total = _run(_graph(graph, model, strategy="ras", ratio=1.0, start=2, interval=3))
    assert torch.equal(everything, plain) and skipped == 0
    cached, skipped, total = _run(
        _graph(graph, model, strategy="ras", ratio=0.25, start=2, end=1, interval=3)
    )
    transformer = manager().load(manager().loaded()[-1], torch.device("cpu")).denoiser
    every = [*transformer.transformer_blocks, *getattr(transformer, "single_transformer_blocks", ())]
    partial = [s for s in range(STEPS) if 2 <= s < STEPS - 1 and (s - 2) % 3]  # steps 3, 4, 6
    passes = total // (STEPS * len(every))
    assert skipped == passes * len(partial) * round(len(every) * 0.75) > 0
    assert torch.isfinite(cached).all() and 0 < (cached - plain).abs().max() < 0.5
    assert not getattr(transformer, entry)._forward_hooks and not transformer.proj_out._forward_hooks
    assert not transformer._forward_pre_hooks
    assert all(type(b.attn.processor).__name__ == processor for b in every)


def test_ras_keeps_the_tokens_it_leaves_out_and_attends_over_all_of_them(root):
    """Cached calls of one denoiser on the tiny SD3 transformer. Left-out tokens keep the previous output
    exactly; given the same input and time as the full step before, the active tokens (which attend over the
    cached keys of the others) equal a full call; at another time they follow it."""
    from app.runtime.families.sd3 import StableDiffusion3
    from app.runtime.step_cache import open_denoiser
    from app.runtime.step_cache.policy import RegionAdaptive

    pipe = f.pipeline(root / f.SD3)
    transformer = pipe.transformer
    config = transformer.config
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, config.in_channels, 8, 8, generator=gen)
    text = torch.randn(1, 5, config.joint_attention_dim, generator=gen)
    pooled = torch.randn(1, config.pooled_projection_dim, generator=gen)
    policy = RegionAdaptive(ratio=0.5, start=1, end=0, interval=10)
    t1, t2 = torch.tensor([800.0]), torch.tensor([700.0])
    with torch.no_grad(), open_denoiser(policy, transformer, 4, StableDiffusion3.forward) as denoise:
        denoise(0, x, t1, text, pooled_projections=pooled)
        full = denoise(1, x, t1, text, pooled_projections=pooled)  # the refresh at `start`
        same = denoise(2, x, t1, text, pooled_projections=pooled)  # cached, nothing changed
        active = denoise.active
        moved = denoise(3, x, t2, text, pooled_projections=pooled)  # cached, another time
        assert torch.equal(denoise.active, active)  # the same busiest tokens (the outputs did not change)
    with torch.no_grad():
        reference = StableDiffusion3.forward(
            transformer, x, t2, encoder_hidden_states=text, pooled_projections=pooled
        )
    patch = config.patch_size
    tokens = torch.zeros((8 // patch) ** 2, dtype=torch.bool)
    tokens[active] = True
    mask = (
        tokens.view(1, 1, 8 // patch, 1, 8 // patch, 1).expand(1, 1, -1, patch, -1, patch).reshape(1, 1, 8, 8)
    )
    mask = mask.expand_as(full)
    assert mask.float().mean() == 0.5
    assert (same - full).abs().max() < 1e-5  # active tokens over cached keys = the full call
    assert torch.equal(moved[~mask], same[~mask])  # left out: the last output, exactly
    assert 0 < (moved[mask] - same[mask]).abs().max()  # the active ones moved with the time
    assert (moved[mask] - reference[mask]).abs().max() < (same[mask] - reference[mask]).abs().max()


def test_first_block_on_sd3_runs_on_our_block_wrapper(root):
    """diffusers' hook cannot take SD3's last block; ours can: threshold 0 equals no cache, a loose one skips."""
    from app.runtime.models import manager

    plain, _, _ = _run(_graph("sd3_txt2img", f.SD3))
    loaded = manager().load(manager().loaded()[-1], torch.device("cpu"))
    forwards = [vars(block).get("forward") for block in loaded.denoiser.transformer_blocks]
    zero, skipped, total = _run(_graph("sd3_txt2img", f.SD3, strategy="first_block", threshold=0.0))
    assert torch.equal(zero, plain) and skipped == 0 and total > 0
    loose, skipped, total = _run(_graph("sd3_txt2img", f.SD3, strategy="first_block", threshold=5.0))
    blocks = len(loaded.denoiser.transformer_blocks)
    assert 0 < skipped < total and skipped % (blocks - 1) == 0  # whole calls skip all blocks but the first
    assert torch.isfinite(loose).all() and 0 < (loose - plain).abs().max() < 1.0
    assert [vars(block).get("forward") for block in loaded.denoiser.transformer_blocks] == forwards


def test_magcache_on_sd3_measures_its_curve_on_a_probe_run(root):
    plain, _, _ = _run(_graph("sd3_txt2img", f.SD3))
    g = _graph("sd3_txt2img", f.SD3, strategy="magcache", threshold=0.5, interval=3, steps=STEPS)
    events: list[dict] = []
    cached = h.run(h.executor(), g, events=events).outputs["sampler"]["latent"].samples
    ratios = next(e for e in events if e.get("event") == "finished" and e.get("node") == "cache")["ratios"]
    values = [float(v) for v in ratios.split(",")]
    assert len(values) == STEPS and values[0] == 1.0 and all(v > 0 for v in values)
    done = next(e for e in events if e.get("event") == "finished" and e.get("node") == "sampler")
    assert 0 < done["skipped_blocks"] < done["cache_total_blocks"]
    assert torch.isfinite(cached).all() and 0 < (cached - plain).abs().max() < 1.0


def test_magcache_takes_diffusers_flux_curve_only_for_flux1s_shape(root, monkeypatch):
    """diffusers' curve was measured on FLUX.1 (19 + 38 blocks): a smaller Flux-architecture model gets its own
    curve from a probe run; with FLUX.1's block counts the shipped curve is used and nothing is measured."""
    import nodes.step_cache as node

    def cache_event(g):
        events: list[dict] = []
        h.run(h.executor(), g, events=events)
        return next(e for e in events if e.get("event") == "finished" and e.get("node") == "cache")

    settings = {"strategy": "magcache", "threshold": 0.5, "interval": 3, "steps": STEPS}
    measured = cache_event(_graph("flux_txt2img", f.FLUX, **settings))
    assert len(measured["ratios"].split(",")) == STEPS
    config = json.loads((root / f.FLUX / "transformer" / "config.json").read_text())
    monkeypatch.setattr(node, "FLUX1_BLOCKS", (config["num_layers"], config["num_single_layers"]))
    assert "ratios" not in cache_event(_graph("flux_txt2img", f.FLUX, **settings))


def test_ras_on_flux_attends_over_the_cached_tokens_at_their_own_positions(root):
    """Given the same input and time as the full step before, the active tokens of a cached Flux call (which
    attend over the others' cached keys, each rotated by its own position) equal a full call; the tokens
    left out keep the last output exactly."""
    from app.runtime.families import by_name
    from app.runtime.step_cache import open_denoiser
    from app.runtime.step_cache.policy import RegionAdaptive

    transformer = f.pipeline(root / f.FLUX).transformer
    forward, config = by_name("flux").forward, transformer.config
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, config.in_channels // 4, 8, 8, generator=gen)
    text = torch.randn(1, 7, config.joint_attention_dim, generator=gen)
    extra = {"pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=gen),
             "guidance": torch.tensor([3.5])}  # fmt: skip
    policy = RegionAdaptive(ratio=0.5, start=1, end=0, interval=10)
    t1, t2 = torch.tensor([800.0]), torch.tensor([700.0])
    with torch.no_grad(), open_denoiser(policy, transformer, 4, forward) as denoise:
        denoise(0, x, t1, text, **dict(extra))
        full = denoise(1, x, t1, text, **dict(extra))
        same = denoise(2, x, t1, text, **dict(extra))
        active = denoise.active
        moved = denoise(3, x, t2, text, **dict(extra))
    tokens = torch.zeros(16, dtype=torch.bool)
    tokens[active] = True
    mask = tokens.view(1, 1, 4, 1, 4, 1).expand(1, x.shape[1], -1, 2, -1, 2).reshape(x.shape)
    assert mask.float().mean() == 0.5
    assert (same - full).abs().max() < 1e-5
    assert torch.equal(moved[~mask], same[~mask]) and 0 < (moved[mask] - same[mask]).abs().max()
