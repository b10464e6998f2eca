"""Step Cache: MODEL -> MODEL carrying a feature-cache policy that the Sampler applies for its loop
(app/runtime/step_cache). "Step cache" is work skipped across denoising steps; the engine's result cache
(what `cached` badges and --cache-dir mean) is another thing.

The loaded model is never changed: the node only appends plain data (a CachePolicy) to the MODEL's patches;
the Sampler opens the policy around its denoising loop and closes it after, and reports how many UNet blocks
were skipped (`skipped_blocks` on its finished event). The adaptive strategy calibrates its plan here, on one
short probe run, and reports it (`plan`) so it can be pasted into the `plan` param to freeze it.

Imports torch only inside functions (through app.runtime); never import Qt here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime.families import architecture_of, has_unet
from app.runtime.schedulers import whole_numbers
from app.runtime.step_cache import STRATEGIES, AdaptiveCache, CacheError, CachePolicy, make_policy
from app.runtime.step_cache.policy import SCHEDULES
from nodes._diffusion import inference, load

FLUX1_BLOCKS = (19, 38)  # FLUX.1 dev / schnell: double-stream, single-stream blocks


def parse_plan(text: str) -> tuple[int, ...]:
    """ "0, 2, 5" -> (0, 2, 5); raises ValueError with a readable message."""
    steps = whole_numbers(text, "plan must be step numbers separated by commas, like '0,2,5'")
    if steps and min(steps) != 0:
        raise ValueError(f"plan must include step 0 (the first step always runs in full), got {text!r}")
    return steps


def parse_block_plans(text: str) -> tuple[tuple[int, ...], ...]:
    """ "0,2,5 | 0,3,6" (a DiT's per-block plans, in block order) -> ((0, 2, 5), (0, 3, 6)); () for one plan."""
    if "|" not in text:
        return ()
    return tuple(parse_plan(part) for part in text.split("|"))


def _policy(params: dict[str, Any]) -> CachePolicy:
    """The policy the params describe (an adaptive one without a plan is calibrated later, in run)."""
    if params["strategy"] == "adaptive":
        blocks = parse_block_plans(params["plan"])
        plan = (0,) if blocks else parse_plan(params["plan"]) or (0,)
        last = max(max(p) for p in (plan, *blocks))
        return AdaptiveCache(
            plan=plan, plan_steps=max(params["steps"], last + 1), branch=params["branch"], blocks=blocks
        )
    return make_policy(params["strategy"], params)


def _validate(params: dict[str, Any], inputs: dict[str, str | None]) -> list[str]:
    problems = []
    try:
        _policy(params)
    except (ValueError, CacheError) as error:
        problems.append(str(error))
    family = inputs.get("model")
    needs = STRATEGIES[params["strategy"]].needs if params["strategy"] in STRATEGIES else ""
    if needs == "unet" and not has_unet(family):
        problems.append(f"{params['strategy']} caches UNet features; a {family} model has no UNet")
    if needs == "transformer" and architecture_of(family) is not None and has_unet(family):
        problems.append(f"{params['strategy']} caches transformer blocks; a {family} model is a UNet")
    return problems


@node(
    "sampling.cache",
    title="Step Cache",
    category="sampling",
    disk_cache=False,
    inputs=[Input("model", T.MODEL, "The model whose denoising loop should skip work.")],
    outputs=[Output("model", T.MODEL, "The same model, carrying the cache policy for the Sampler.")],
    params=[
        Param(
            "strategy",
            T.STRING,
            "deepcache",
            choices=tuple(STRATEGIES),
            description="deepcache: reuse the UNet's deep features, run only the shallow branch on cached "
            "steps (arXiv 2312.00858); pab: diffusers' Pyramid Attention Broadcast (reuse attention "
            "outputs); adaptive: DeepCache with full passes where a calibration run saw the features move "
            "most; first_block (DiTs): skip the other blocks while the first block's output barely moves; "
            "taylorseer (DiTs): predict features between full steps (arXiv 2503.06923); magcache (DiTs): "
            "skip while the measured residual magnitudes say it is safe (arXiv 2506.09045); delta_dit "
            "(DiTs): skipped blocks add their cached output delta, the rear blocks early and the front "
            "blocks late (arXiv 2406.01125); ras (SD3, Flux): at cached steps only the busiest share of image "
            "tokens runs (arXiv 2502.10389); none: off (A/B by switching this one param).",
        ),
        Param(
            "interval",
            T.INT,
            3,
            min=1,
            max=50,
            when={"strategy": ("deepcache", "adaptive", "taylorseer", "magcache", "delta_dit", "ras")},
            description="deepcache: one full UNet pass every N steps (1 = no caching). adaptive: the same "
            "budget of full passes, ceil(steps / N), placed by calibration. taylorseer, delta_dit: a full "
            "step every N (delta_dit: counted from each stage's start), ras: a full step every N between "
            "start and end; magcache: at most N steps skipped in a row.",
        ),
        Param(
            "branch",
            T.INT,
            0,
            min=0,
            max=40,
            when={"strategy": ("deepcache", "adaptive")},
            description="deepcache, adaptive: skip connections the shallow branch keeps (0 = shallowest, "
            "fastest; SD1.5 has 0..11). Deeper = slower, closer to the uncached result.",
        ),
        Param(
            "schedule",
            T.STRING,
            "uniform",
            choices=SCHEDULES,
            when={"strategy": ("deepcache",)},
            description="deepcache: uniform = every N steps; non_uniform = same number of full passes, "
            "denser near the first and last steps.",
        ),
        Param(
            "start",
            T.INT,
            2,
            min=0,
            max=1000,
            when={"strategy": ("deepcache", "pab", "taylorseer", "ras")},
            description="deepcache, pab, taylorseer, ras: the first steps are never cached. They set the composition: on the "
            "embedded model, interval 3 over 20 steps keeps ~44 dB PSNR to the uncached image with 2 here, "
            "~22 dB with 0.",
        ),
        Param(
            "end",
            T.INT,
            0,
            min=0,
            max=1000,
            when={"strategy": ("deepcache", "pab", "taylorseer", "ras")},
            description="deepcache, pab, taylorseer, ras: last steps never cached.",
        ),
        Param(
            "self_interval",
            T.INT,
            2,
            min=1,
            max=20,
            when={"strategy": ("pab",)},
            description="pab: self-attention recomputed every N steps, reused between.",
        ),
        Param(
            "cross_interval",
            T.INT,
            4,
            min=1,
            max=20,
            when={"strategy": ("pab",)},
            description="pab: cross-attention recomputed every N steps, reused between.",
        ),
        Param(
            "steps",
            T.INT,
            20,
            min=1,
            max=1000,
            when={"strategy": ("adaptive", "magcache")},
            description="adaptive: the Sampler's step count the plan is made for (other counts rescale it); "
            "magcache on a model without a shipped curve (SD3, Flux-architecture models other than FLUX.1): the "
            "probe run's step count.",
        ),
        Param(
            "plan",
            T.STRING,
            "",
            when={"strategy": ("adaptive",)},
            description="adaptive: steps that run the whole UNet, e.g. '0,1,3,6,10'; on a DiT one plan per "
            "block separated by '|', e.g. '0,2,5 | 0,3,6'. Empty = calibrate on a short probe run (the Step "
            "Cache node reports the plan it found; paste it here to freeze it).",
        ),
        Param(
            "threshold",
            T.FLOAT,
            0.05,
            min=0.0,
            max=10.0,
            step=0.01,
            when={"strategy": ("first_block", "magcache")},
            description="first_block, magcache (DiTs): how much change still counts as 'the same' and is "
            "skipped; higher = faster and further from the uncached picture (first_block: 0 = never skip, "
            "equal to no cache).",
        ),
        Param(
            "order",
            T.INT,
            1,
            min=1,
            max=4,
            when={"strategy": ("taylorseer",)},
            description="taylorseer: the Taylor expansion's order used to predict features between full steps.",
        ),
        Param(
            "boundary",
            T.INT,
            10,
            min=0,
            max=1000,
            when={"strategy": ("delta_dit",)},
            description="delta_dit: the first step of the late stage: before it the rear blocks are cached "
            "(the outline forms), from it the front blocks (details).",
        ),
        Param(
            "blocks",
            T.INT,
            0,
            min=0,
            max=1000,
            when={"strategy": ("delta_dit",)},
            description="delta_dit: how many transformer blocks each stage caches (0 = three quarters of them, "
            "the paper's setting).",
        ),
        Param(
            "ratio",
            T.FLOAT,
            0.25,
            min=0.01,
            max=1.0,
            step=0.05,
            when={"strategy": ("ras",)},
            description="ras: the share of image tokens updated at a cached step (the ones whose output was "
            "largest); 1 = all.",
        ),
    ],
    validate=_validate,
)
def cache(
    ctx,
    model,
    strategy,
    interval,
    branch,
    schedule,
    start,
    end,
    self_interval,
    cross_interval,
    steps,
    plan,
    threshold,
    order,
    boundary,
    blocks,
    ratio,
):
    """Speeds up the Sampler by skipping work across denoising steps (feature caching). The model itself is
    not changed; the Sampler applies the policy for its loop and reports the skipped blocks. UNets:
    deepcache, pab, adaptive; diffusion transformers (SD3, Flux): first_block, taylorseer, magcache (FLUX.1's
    curve, or one measured on a probe run) through diffusers' cache hooks, delta_dit, adaptive and ras."""
    params = dict(locals())
    try:
        policy = _policy(params)
    except (ValueError, CacheError) as error:
        raise NodeError(str(error)) from None
    transformer = model.family and not has_unet(model.family)
    if strategy == "magcache" and transformer and not _has_shipped_curve(ctx, model):
        policy = _measured_magnitudes(ctx, params, model, policy)
    if policy.needs == "unet" or strategy == "adaptive":
        loaded, device = load(ctx, model.source)
        with inference():
            denoiser = loaded.on(loaded.family.denoiser, device)
            try:
                if loaded.family.denoiser == "unet":
                    policy = _check_or_calibrate(ctx, policy, params, denoiser, model)
                elif not params["plan"].strip():
                    policy = _calibrate_blocks(ctx, params, denoiser, model, loaded.family)
            except CacheError as error:
                raise NodeError(str(error)) from None
    return {"model": dataclasses.replace(model, patches=(*model.patches, policy))}


def _has_shipped_curve(ctx, model: Any) -> bool:
    """diffusers' MagCache curve was measured on FLUX.1 (19 double- and 38 single-stream blocks); another
    Flux-architecture transformer (a tiny or pruned one) gets its own curve measured, as any other DiT."""
    if architecture_of(model.family) != "flux":
        return False
    config = load(ctx, model.source)[0].denoiser.config
    return (config.num_layers, config.num_single_layers) == FLUX1_BLOCKS


def _measured_magnitudes(ctx, params: dict[str, Any], model: Any, policy: CachePolicy) -> CachePolicy:
    """MagCache on a DiT diffusers ships no curve for: measure it on one uncached probe run of `steps`."""
    from app.runtime.step_cache.adaptive import magnitude_ratios

    loaded, device = load(ctx, model.source)
    with inference():
        transformer = loaded.on(loaded.family.denoiser, device)
        latents, kwargs, steps, step = _probe_loop(params, model, loaded.family, transformer)
        ratios = magnitude_ratios(transformer, loaded.family.forward, steps, latents, step=step, **kwargs)
    ctx.report(ratios=",".join(f"{r:.4f}" for r in ratios))
    return dataclasses.replace(policy, ratios=ratios)


def _calibrate_blocks(ctx, params: dict[str, Any], transformer: Any, model: Any, family: Any) -> CachePolicy:
    """An adaptive plan per DiT block, from one uncached flow-matching probe run; reported as `plan`."""
    from app.runtime.step_cache.adaptive import calibrate_blocks

    latents, kwargs, steps, step = _probe_loop(params, model, family, transformer)
    calibrated = calibrate_blocks(
        transformer,
        family.forward,
        steps,
        latents,
        step=step,
        budget=math.ceil(params["steps"] / params["interval"]),
        progress=ctx.progress,
        **kwargs,
    )
    ctx.report(plan=" | ".join(",".join(str(s) for s in plan) for plan in calibrated.blocks))
    return calibrated


def _probe_loop(params: dict[str, Any], model: Any, family: Any, transformer: Any):
    """A DiT calibration probe of `steps` flow-matching Euler steps: (latents, model kwargs, timesteps,
    step(velocity, t, x) -> next x)."""
    from app.runtime.schedulers import make_scheduler, timesteps
    from app.runtime.step_cache.adaptive import probe_transformer
    from app.runtime.values import Schedule

    latents, kwargs = probe_transformer(transformer)
    schedule = Schedule("euler", params["steps"])
    scheduler = make_scheduler(schedule, model.scheduler_config, flow=True)
    options = family.timestep_options(scheduler, params["steps"], tuple(latents.shape), transformer.config)
    steps, _ = timesteps(scheduler, schedule, latents.device, options)
    return latents, kwargs, steps, lambda v, t, x: scheduler.step(v, t, x, return_dict=False)[0]


def _check_or_calibrate(
    ctx, policy: CachePolicy, params: dict[str, Any], unet: Any, model: Any
) -> CachePolicy:
    """Refuse a UNet the strategy cannot handle (or a branch it lacks); calibrate an adaptive plan if none."""
    from app.runtime.step_cache.deepcache import UNetWalk

    if params["strategy"] in ("deepcache", "adaptive"):
        UNetWalk(unet).check_branch(params["branch"])
    if params["strategy"] != "adaptive" or parse_plan(params["plan"]):
        return policy
    from app.runtime.schedulers import make_scheduler, timesteps
    from app.runtime.step_cache.adaptive import calibrate, probe_inputs
    from app.runtime.values import Schedule

    schedule = Schedule("ddim", params["steps"])
    scheduler = make_scheduler(schedule, model.scheduler_config)
    steps, _ = timesteps(scheduler, schedule, next(unet.parameters()).device)
    latents, text, extra = probe_inputs(unet)
    calibrated = calibrate(
        unet,
        steps,
        latents * scheduler.init_noise_sigma,
        text,
        step=lambda eps, t, x: scheduler.step(eps, t, x, return_dict=False)[0],
        budget=math.ceil(params["steps"] / params["interval"]),
        branch=params["branch"],
        progress=ctx.progress,
        **extra,
    )
    ctx.report(plan=",".join(str(s) for s in calibrated.plan))
    return calibrated
