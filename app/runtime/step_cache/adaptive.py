"""Calibrating an adaptive plan: full passes where the cached features move most (UNets: DeepCache's deep
feature; DiTs: each block's output delta, one plan per block).

In the spirit of "Block-wise Adaptive Caching for Accelerating Diffusion Policy" (BAC): instead of a fixed
interval, one short uncached run records the UNet's deep feature (the one DeepCache would reuse) at every
step. Reusing step r's feature at a later step i costs about ||F_i - F_r|| / ||F_i||; `plan_refreshes`
picks, by dynamic programming, the `budget` refresh steps that make the summed cost smallest. The result is an `AdaptiveCache`
policy: plain data that a graph saves, so a shared graph reproduces the plan without calibrating again.

`plan_refreshes` is pure Python; `calibrate` needs torch and diffusers (runtime layer). Never import Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.runtime.step_cache.policy import AdaptiveCache, CacheError


def plan_refreshes(cost: Sequence[Sequence[float]], budget: int) -> tuple[int, ...]:
    """Choose `budget` refresh steps (step 0 always one) minimising the summed reuse cost.

    Args:
        cost: cost[r][i] = error of using step r's cached feature at step i (only r < i is read).
        budget: how many steps run in full; clipped to the number of steps.
    """
    steps = len(cost)
    budget = max(1, min(budget, steps))
    # segment[r][j]: total cost when step r refreshes and steps r+1 .. j-1 reuse its feature.
    segment = [[0.0] * (steps + 1) for _ in range(steps)]
    for r in range(steps):
        for j in range(r + 2, steps + 1):
            segment[r][j] = segment[r][j - 1] + cost[r][j - 1]
    inf = float("inf")
    # best[k][j]: least cost covering steps 0 .. j-1 with k refreshes, the last segment ending at j.
    best = [[inf] * (steps + 1) for _ in range(budget + 1)]
    choice = [[0] * (steps + 1) for _ in range(budget + 1)]
    for j in range(1, steps + 1):
        best[1][j] = segment[0][j]
    for k in range(2, budget + 1):
        for j in range(k, steps + 1):
            for r in range(k - 1, j):
                value = best[k - 1][r] + segment[r][j]
                if value < best[k][j]:
                    best[k][j], choice[k][j] = value, r
    plan, end = [], steps
    for k in range(budget, 1, -1):
        end = choice[k][end]
        plan.append(end)
    return tuple([0, *reversed(plan)])


def calibrate(
    unet: Any,
    timesteps: Sequence[Any],
    sample: Any,
    encoder_hidden_states: Any,
    step: Callable[[Any, Any, Any], Any],
    budget: int,
    branch: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **unet_kwargs: Any,
) -> AdaptiveCache:
    """Run the loop once uncached, measure where the deep feature at `branch` moves, and plan `budget` refreshes.

    Args:
        unet: a UNet2DConditionModel (only read).
        timesteps: the loop's timesteps, one model call each.
        sample: the starting latents (already scaled for the scheduler's first step).
        encoder_hidden_states: text embeddings (a CFG batch is fine; the sample's batch must match).
        step: `step(prediction, timestep, sample) -> next sample`, e.g. a scheduler's step.
        budget: how many steps may run in full (e.g. ceil(steps / interval)).
        branch: the DeepCache branch the plan is for.
        progress: called with (step, total) after each step.
    """
    import torch

    from app.runtime.step_cache.deepcache import UNetWalk

    walk = UNetWalk(unet)
    walk.check_branch(branch)
    if budget < 1:
        raise CacheError(f"budget must be at least 1, got {budget}")
    features = []
    with torch.no_grad():
        for index, t in enumerate(timesteps):
            prediction, feature = walk.full(branch, sample, t, encoder_hidden_states, **unet_kwargs)
            features.append(feature.float().flatten())
            sample = step(prediction, t, sample)
            if progress is not None:
                progress(index + 1, len(timesteps))
        stacked = torch.stack(features)
        distance = torch.cdist(stacked[None], stacked[None])[0]
        cost = (distance / stacked.norm(dim=1).clamp_min(1e-12)[None, :]).tolist()
    return AdaptiveCache(plan=plan_refreshes(cost, budget), plan_steps=len(timesteps), branch=branch)


def calibrate_blocks(
    transformer: Any,
    forward: Callable[..., Any],
    timesteps: Sequence[Any],
    sample: Any,
    step: Callable[[Any, Any, Any], Any],
    budget: int,
    progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> AdaptiveCache:
    """The DiT version: one uncached loop records every block's output delta (its change to the image
    tokens) at each step; each block gets its own `budget` refresh steps where reusing an older delta would
    cost most (||D_i - D_r|| / ||D_i||, as for the UNet's feature)."""
    import torch

    from app.runtime.step_cache.blocks import blocks_of

    blocks = blocks_of(transformer)
    if budget < 1:
        raise CacheError(f"budget must be at least 1, got {budget}")
    deltas: list[list[Any]] = [[] for _ in blocks]

    def recorder(index: int) -> Callable[..., None]:
        def record(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            before = kwargs.get("hidden_states", args[0] if args else None)
            deltas[index].append((output[1] - before).float().flatten())

        return record

    handles = [block.register_forward_hook(recorder(i), with_kwargs=True) for i, block in enumerate(blocks)]
    try:
        with torch.no_grad():
            for index, t in enumerate(timesteps):
                sample = step(forward(transformer, sample, t, **kwargs), t, sample)
                if progress is not None:
                    progress(index + 1, len(timesteps))
    finally:
        for handle in handles:
            handle.remove()
    plans = []
    for recorded in deltas:
        stacked = torch.stack(recorded)
        distance = torch.cdist(stacked[None], stacked[None])[0]
        cost = (distance / stacked.norm(dim=1).clamp_min(1e-12)[None, :]).tolist()
        plans.append(plan_refreshes(cost, budget))
    return AdaptiveCache(plan=(0,), plan_steps=len(timesteps), blocks=tuple(plans))


def magnitude_ratios(
    transformer: Any,
    forward: Callable[..., Any],
    timesteps: Sequence[Any],
    sample: Any,
    step: Callable[[Any, Any, Any], Any],
    **kwargs: Any,
) -> tuple[float, ...]:
    """MagCache's curve for a DiT, from one uncached loop: per step, the mean over tokens of the residual's
    norm (the last block's image tokens minus the first block's input) over the previous step's, 1.0 for
    the first step (the formula of diffusers' calibration mode)."""
    import torch

    from app.runtime.step_cache.blocks import blocks_of

    blocks = blocks_of(transformer)
    seen: dict[str, Any] = {}

    def head(module: Any, args: Any, kwargs: Any) -> None:
        seen["in"] = kwargs.get("hidden_states", args[0] if args else None)

    def tail(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        out = output[1] if isinstance(output, tuple) else output
        seen["residual"] = out[:, -seen["in"].shape[1] :] - seen["in"]

    handles = [
        blocks[0].register_forward_pre_hook(head, with_kwargs=True),
        blocks[-1].register_forward_hook(tail, with_kwargs=True),
    ]
    ratios, previous = [], None
    try:
        with torch.no_grad():
            for t in timesteps:
                sample = step(forward(transformer, sample, t, **kwargs), t, sample)
                residual = seen["residual"].float()
                if previous is None:
                    ratios.append(1.0)
                else:
                    norms = torch.linalg.norm(residual, dim=-1) / (torch.linalg.norm(previous, dim=-1) + 1e-8)
                    ratios.append(float(norms.mean()))
                previous = residual
    finally:
        for handle in handles:
            handle.remove()
    return tuple(ratios)


def probe_transformer(transformer: Any, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Inputs for a DiT calibration probe: noise latents at half the model's native size (unpacked: 16
    channels for Flux) and zero text (77 tokens, pooled zeros, Flux dev's guidance 3.5)."""
    import torch

    config = transformer.config
    parameter = next(transformer.parameters())
    packed = "single_transformer_blocks" in dict(transformer.named_children())
    channels = config.in_channels // 4 if packed else config.in_channels
    patch = 2 if packed else config.patch_size
    side = max(2 * patch, (getattr(config, "sample_size", 64) or 64) // 2 // (2 * patch) * (2 * patch))
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, channels, side, side, generator=generator)
    kwargs: dict[str, Any] = {
        "encoder_hidden_states": torch.zeros(1, 77, config.joint_attention_dim),
        "pooled_projections": torch.zeros(1, config.pooled_projection_dim),
    }
    if getattr(config, "guidance_embeds", False):
        kwargs["guidance"] = torch.full([1], 3.5)
    place = {
        k: v.to(parameter.device, torch.float32 if k == "guidance" else parameter.dtype)
        for k, v in kwargs.items()
    }
    return latents.to(parameter.device, parameter.dtype), place


def probe_inputs(unet: Any, seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """Inputs for a calibration probe on `unet`: (noise latents at half the model's native size, empty text
    embeddings, extra UNet kwargs such as SDXL's zeroed added conditioning)."""
    import torch

    config = unet.config
    parameter = next(unet.parameters())
    factor = 2**unet.num_upsamplers
    side = max(factor, config.sample_size // 2 // factor * factor)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, config.in_channels, side, side, generator=generator)
    text = torch.zeros(1, 77, config.cross_attention_dim)
    extra: dict[str, Any] = {}
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {"text_embeds": torch.zeros(1, pooled), "time_ids": torch.zeros(1, 6)}
    elif config.addition_embed_type is not None or config.class_embed_type is not None:
        raise CacheError("adaptive calibration needs a plan for this UNet (it takes extra conditioning)")

    def place(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: place(v) for k, v in value.items()}
        return value.to(parameter.device, parameter.dtype)

    return place(latents), place(text), place(extra)
