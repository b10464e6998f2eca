"""Cache policies: plain-data descriptions of which work a denoising loop may skip, and at which steps.

A policy is a frozen dataclass, one class per strategy, so a graph can save it, the engine can key it, and
a new strategy (the DiT ones: FirstBlockCache, TaylorSeer, MagCache, DeltaDiT, RegionAdaptive) is one more class here that
names its denoiser, plus that denoiser's module, plus its row in STRATEGIES. Every schedule is keyed by the step
index of the loop (0 .. total_steps - 1), never by timestep values, so it means the same under every scheduler.

The Sampler uses a policy like this (the loaded model is only borrowed, never changed for good):

    with open_denoiser(policy, unet, total_steps) as denoise:
        for i, t in enumerate(timesteps):
            prediction = denoise(i, latents_in, t, text_embeddings, **unet_kwargs)
    ctx.report(skipped_blocks=denoise.skipped_blocks)

Pure data: never import torch, diffusers or Qt here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from app.runtime.step_cache.base import CacheError, check_int, check_steps

SCHEDULES = ("uniform", "non_uniform")


@dataclass(frozen=True)
class CachePolicy:
    """Base of all strategies; on its own it skips nothing (strategy "none").

    Class variables: `strategy` (the Step Cache node's name for it) and `denoiser` ("module:Class" of the
    base.Denoiser subclass that applies it, built as Denoiser(model, total_steps, policy))."""

    strategy: ClassVar[str] = "none"
    denoiser: ClassVar[str] = "app.runtime.step_cache.base:Denoiser"
    needs: ClassVar[str] = ""  # "unet", "transformer" (a DiT), or "" for any denoiser


@dataclass(frozen=True)
class NoCache(CachePolicy):
    """Skips nothing: the plain model call. Lets users A/B a cache by switching one param."""

    strategy: ClassVar[str] = "none"


@dataclass(frozen=True)
class DeepCache(CachePolicy):
    """DeepCache (Ma et al. 2023, arXiv 2312.00858): reuse a UNet's deep up-path feature across steps.

    Args:
        interval (int, default 3): one full UNet pass every `interval` steps; 1 = no caching.
        branch (int, default 0): which skip connection the shallow branch keeps (0 = only conv_in's; each
            UNet layer deeper keeps one more). Deeper = more work on cached steps, better quality.
        schedule (str, default "uniform"): "uniform" refreshes every `interval` steps; "non_uniform" spends
            the same number of full passes, placed denser near both ends of the step range.
        start (int, default 0): caching is off for the first `start` steps.
        end (int, default 0): caching is off for the last `end` steps.
    """

    strategy: ClassVar[str] = "deepcache"
    denoiser: ClassVar[str] = "app.runtime.step_cache.deepcache:DeepCacheDenoiser"
    needs: ClassVar[str] = "unet"
    interval: int = 3
    branch: int = 0
    schedule: str = "uniform"
    start: int = 0
    end: int = 0

    def __post_init__(self) -> None:
        check_int("interval", self.interval, 1)
        check_int("branch", self.branch, 0)
        check_int("start", self.start, 0)
        check_int("end", self.end, 0)
        if self.schedule not in SCHEDULES:
            raise CacheError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def full_steps(self, total_steps: int) -> frozenset[int]:
        """The step indices that run the whole UNet (and refresh the cache); all others are shallow."""
        check_steps(total_steps)
        first, stop = self.start, max(self.start, total_steps - self.end)
        outside = set(range(0, first)) | set(range(stop, total_steps))
        length = stop - first
        if length == 0:
            return frozenset(outside)
        if self.schedule == "uniform":
            inside = {first + k for k in range(0, length, self.interval)}
        else:
            inside = {first + k for k in _dense_at_ends(length, math.ceil(length / self.interval))}
        return frozenset(outside | inside)


@dataclass(frozen=True)
class AdaptiveCache(CachePolicy):
    """Caching with a calibrated refresh plan (in the spirit of Block-wise Adaptive Caching, BAC).

    A short uncached calibration run measures how much the cached features move at each step; the full
    computations go where they move most (see `app.runtime.step_cache.adaptive`). On a UNet the plan says
    when the whole UNet runs (DeepCache's deep feature is reused between); on a diffusion transformer each
    block has its own plan, and between its refreshes a block adds its cached output delta (as Δ-DiT's
    blocks do). The plan is plain data, so a shared graph reproduces it without calibrating again.

    Args:
        plan (tuple[int, ...]): step indices that run the whole UNet, for a loop of `plan_steps` steps (and
            every DiT block's plan when `blocks` is empty).
        plan_steps (int): the loop length the plans were made for; other lengths rescale them proportionally.
        branch (int, default 0): as in DeepCache (UNets).
        blocks (tuple[tuple[int, ...], ...]): DiTs: per block, in call order, the steps it computes.
    """

    strategy: ClassVar[str] = "adaptive"
    denoiser: ClassVar[str] = "app.runtime.step_cache.blocks:adaptive_denoiser"
    plan: tuple[int, ...] = (0,)
    plan_steps: int = 1
    branch: int = 0
    blocks: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        check_int("plan_steps", self.plan_steps, 1)
        check_int("branch", self.branch, 0)
        object.__setattr__(self, "plan", self._checked(self.plan))
        object.__setattr__(self, "blocks", tuple(self._checked(p) for p in self.blocks))

    def _checked(self, plan: tuple[int, ...]) -> tuple[int, ...]:
        plan = tuple(sorted(set(plan)))
        if not plan or plan[0] != 0 or plan[-1] >= self.plan_steps:
            raise CacheError(f"plan must start at step 0 and stay below {self.plan_steps}, got {list(plan)}")
        return plan

    def full_steps(self, total_steps: int) -> frozenset[int]:
        """The plan, rescaled from `plan_steps` to `total_steps` when they differ."""
        return self._rescaled(self.plan, total_steps)

    def _rescaled(self, plan: tuple[int, ...], total_steps: int) -> frozenset[int]:
        check_steps(total_steps)
        if total_steps == self.plan_steps or self.plan_steps == 1:
            return frozenset(s for s in plan if s < total_steps) | {0}
        scale = (total_steps - 1) / (self.plan_steps - 1)
        return frozenset(round(s * scale) for s in plan)

    def reused(self, step: int, total_steps: int, count: int) -> frozenset[int]:
        """DiTs: the blocks whose plan does not compute at `step` (they add their cached delta)."""
        if self.blocks and len(self.blocks) != count:
            raise CacheError(f"the plan has {len(self.blocks)} block plans but the model has {count} blocks")
        plans = self.blocks or (self.plan,) * count
        return frozenset(b for b, plan in enumerate(plans) if step not in self._rescaled(plan, total_steps))


@dataclass(frozen=True)
class PyramidBroadcast(CachePolicy):
    """Pyramid Attention Broadcast (Zhao et al. 2024, arXiv 2408.12588) via diffusers' hook, on UNet attention.

    Args:
        self_interval (int, default 2): self-attention is computed every `self_interval` calls, reused between.
        cross_interval (int, default 4): the same for cross-attention (text changes least across steps).
        start (int, default 2): no broadcasting in the first `start` steps.
        end (int, default 2): no broadcasting in the last `end` steps.
    """

    strategy: ClassVar[str] = "pab"
    denoiser: ClassVar[str] = "app.runtime.step_cache.pab:PabDenoiser"
    needs: ClassVar[str] = "unet"
    self_interval: int = 2
    cross_interval: int = 4
    start: int = 2
    end: int = 2

    def __post_init__(self) -> None:
        check_int("self_interval", self.self_interval, 1)
        check_int("cross_interval", self.cross_interval, 1)
        check_int("start", self.start, 0)
        check_int("end", self.end, 0)


DIFFUSERS_HOOKS = "app.runtime.step_cache.dit:DiffusersCacheDenoiser"


@dataclass(frozen=True)
class FirstBlockCache(CachePolicy):
    """First-block cache (ParaAttention's, diffusers' FirstBlockCacheConfig), on a DiT: each call runs the
    first transformer block; when its output moved less than `threshold` (relative L1) since the last full
    call, the remaining blocks' residual is reused instead of computed. 0 = never skip (equals no cache).

    Args:
        threshold (float, default 0.05): how much change counts as "the same"; higher skips more.
    """

    strategy: ClassVar[str] = "first_block"
    denoiser: ClassVar[str] = "app.runtime.step_cache.blocks:first_block_denoiser"
    needs: ClassVar[str] = "transformer"
    threshold: float = 0.05

    def __post_init__(self) -> None:
        _check_fraction("threshold", self.threshold)


@dataclass(frozen=True)
class TaylorSeer(CachePolicy):
    """TaylorSeer (Liu et al. 2025, arXiv 2503.06923, diffusers' TaylorSeerCacheConfig), on a DiT: features
    are computed in full every `interval` steps and predicted in between by a Taylor expansion of their
    recent change.

    Args:
        interval (int, default 3): one full call every `interval` steps.
        order (int, default 1): the expansion's order (1 = linear extrapolation).
        start (int, default 2): the first steps always run in full.
        end (int, default 0): the last steps always run in full.
    """

    strategy: ClassVar[str] = "taylorseer"
    denoiser: ClassVar[str] = DIFFUSERS_HOOKS
    needs: ClassVar[str] = "transformer"
    interval: int = 3
    order: int = 1
    start: int = 2
    end: int = 0

    def __post_init__(self) -> None:
        check_int("interval", self.interval, 1)
        check_int("order", self.order, 1)
        check_int("start", self.start, 0)
        check_int("end", self.end, 0)


@dataclass(frozen=True)
class MagCache(CachePolicy):
    """MagCache (Ma et al. 2025, arXiv 2506.09045, diffusers' MagCacheConfig), on DiTs: the residual's
    magnitude ratio between steps follows a curve measured once per model (diffusers ships FLUX.1's; for
    another model, a smaller Flux-architecture one included, the Step Cache node measures it on a probe run,
    `ratios`); after
    the first fifth of the steps, steps whose accumulated error stays within `threshold` reuse the last
    residual, at most `interval` in a row.

    Args:
        threshold (float, default 0.06): the accumulated error allowed (0 still skips a step whose
            measured ratio is exactly 1).
        interval (int, default 3): at most this many steps skipped in a row.
    """

    strategy: ClassVar[str] = "magcache"
    denoiser: ClassVar[str] = DIFFUSERS_HOOKS
    needs: ClassVar[str] = "transformer"
    threshold: float = 0.06
    interval: int = 3
    ratios: tuple[
        float, ...
    ] = ()  # the model's measured magnitude ratios per step; () = the shipped Flux ones

    def __post_init__(self) -> None:
        _check_fraction("threshold", self.threshold)
        check_int("interval", self.interval, 1)


@dataclass(frozen=True)
class DeltaDiT(CachePolicy):
    """Δ-DiT (Chen et al. 2024, arXiv 2406.01125), on a DiT: a skipped block range adds the change it made to
    its input on the last full step (its cached output delta) instead of running. In the early steps (before
    `boundary`, where the outline forms) the rear blocks are cached; later (details) the front blocks. Each
    stage runs in full on its first step and then every `interval` steps.

    Args:
        boundary (int, default 10): the first step of the late stage (the paper's 20-step setting halves the
            loop); a boundary past the last step keeps the whole loop in the early stage.
        blocks (int, default 0): how many blocks each stage caches; 0 = three quarters of the model's
            blocks, the paper's setting (with a full step every 2, its 1.6x on PixArt-α's 28 blocks means 21
            cached).
        interval (int, default 2): one full step every `interval` steps; 1 = no caching.
    """

    strategy: ClassVar[str] = "delta_dit"
    denoiser: ClassVar[str] = "app.runtime.step_cache.blocks:BlockDeltaDenoiser"
    needs: ClassVar[str] = "transformer"
    boundary: int = 10
    blocks: int = 0
    interval: int = 2

    def __post_init__(self) -> None:
        check_int("boundary", self.boundary, 0)
        check_int("blocks", self.blocks, 0)
        check_int("interval", self.interval, 1)

    def reused(self, step: int, total_steps: int, count: int) -> frozenset[int]:
        """The blocks (0 .. count - 1, in call order) that add their cached delta at `step`; none on full steps."""
        check_steps(total_steps)
        late = step >= self.boundary
        start = min(self.boundary, total_steps) if late else 0
        if (step - start) % self.interval == 0:
            return frozenset()
        size = min(count, self.blocks or 3 * count // 4)
        return frozenset(range(size) if late else range(count - size, count))


@dataclass(frozen=True)
class RegionAdaptive(CachePolicy):
    """RAS, region-adaptive sampling (Liu et al. 2025, arXiv 2502.10389), on SD3 and Flux DiTs: at cached steps
    only the `ratio` of image tokens with the largest previous model output run through the transformer
    (attending to every token, the others' keys and values cached); the rest keep their last output.

    Args:
        ratio (float, default 0.25): the share of image tokens updated at a cached step.
        start (int, default 4): the first steps run in full (the layout forms there).
        end (int, default 0): the last steps run in full.
        interval (int, default 5): a full step every `interval` steps between them, refreshing every cache.
    """

    strategy: ClassVar[str] = "ras"
    denoiser: ClassVar[str] = "app.runtime.step_cache.ras:RasDenoiser"
    needs: ClassVar[str] = "transformer"
    ratio: float = 0.25
    start: int = 4
    end: int = 0
    interval: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, int | float) or not 0 < self.ratio <= 1:
            raise CacheError(f"ratio must be a share above 0 and at most 1, got {self.ratio!r}")
        check_int("start", self.start, 0)
        check_int("end", self.end, 0)
        check_int("interval", self.interval, 1)


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise CacheError(f"{name} must be a number from 0 to 10, got {value!r}")


STRATEGIES: dict[str, type[CachePolicy]] = {
    cls.strategy: cls
    for cls in (
        NoCache,
        DeepCache,
        PyramidBroadcast,
        AdaptiveCache,
        FirstBlockCache,
        TaylorSeer,
        MagCache,
        DeltaDiT,
        RegionAdaptive,
    )
}


def make_policy(strategy: str, params: dict[str, Any] | None = None) -> CachePolicy:
    """Build the policy for `strategy` from the entries of `params` that strategy knows (others are ignored)."""
    params = params or {}
    cls = STRATEGIES.get(strategy)
    if cls is None:
        raise CacheError(f"unknown cache strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    names = {f.name for f in fields(cls)}
    known = {name: value for name, value in params.items() if name in names}
    return cls(**known)


def _dense_at_ends(length: int, count: int) -> list[int]:
    """`count` distinct indices in [0, length), spaced like a cosine so they crowd at both ends."""
    count = min(count, length)
    if count == 1:
        return [0]
    picks: list[int] = []
    for k in range(count):
        spot = round((1 - math.cos(math.pi * k / (count - 1))) / 2 * (length - 1))
        lowest = picks[-1] + 1 if picks else 0
        picks.append(min(max(spot, lowest), length - (count - k)))
    return picks
