"""The one adapter to diffusers' cache hooks (experimental in diffusers 0.42.1, pinned with it): first-block
cache, TaylorSeer and MagCache on a diffusion transformer, as FirstBlockCache / TaylorSeer / MagCache
policies describe them. If the hook API changes, only this file does.

The hooks go on the transformer for one sampling loop (diffusers' `apply_*` functions, which also take
models without diffusers' CacheMixin, such as SD3's) and come off by their hook names when it ends, also
on an error, so the shared model is never left cached (nor with the instance `forward` attributes diffusers
leaves behind). Each call runs in a cache context named by its
pass in the step (its order: cond, uncond, ... keep separate states, as the pipelines' "cond" / "uncond"
contexts do) with the step index. Skipped work is counted the same way for
every strategy: a forward hook on each block's attention query projection counts the blocks that really
computed (a skipped block is still called, but returns its cached or predicted output without reaching
it), and `skipped_blocks` is what the plain calls would have run minus that.

Never import Qt here; torch and diffusers are imported by the loop's use only.
"""

from __future__ import annotations

from typing import Any

import torch

from app.runtime.step_cache.base import CacheError, Denoiser
from app.runtime.step_cache.blocks import blocks_of
from app.runtime.step_cache.policy import FirstBlockCache, MagCache, TaylorSeer


def diffusers_config(policy: Any, total_steps: int, model: Any) -> Any:
    """The diffusers hook config for a policy and a loop of `total_steps` (CacheError if it cannot run)."""
    from diffusers import hooks

    if isinstance(policy, FirstBlockCache):  # SD3's goes to blocks.FirstBlockDenoiser instead
        return hooks.FirstBlockCacheConfig(threshold=policy.threshold)
    if isinstance(policy, TaylorSeer):
        return hooks.TaylorSeerCacheConfig(
            cache_interval=policy.interval,
            disable_cache_before_step=policy.start,
            disable_cache_after_step=max(policy.start, total_steps - policy.end) if policy.end else None,
            max_order=policy.order,
            taylor_factors_dtype=torch.float32,
        )
    if isinstance(policy, MagCache):
        ratios = list(policy.ratios)
        if not ratios:
            if type(model).__name__ != "FluxTransformer2DModel":
                raise CacheError(
                    f"magcache needs magnitude ratios measured on the model; diffusers ships Flux's only, "
                    f"not {type(model).__name__}'s (the Step Cache node measures them)"
                )
            from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

            ratios = FLUX_MAG_RATIOS
        return hooks.MagCacheConfig(
            threshold=policy.threshold,
            max_skip_steps=policy.interval,
            num_inference_steps=total_steps,
            mag_ratios=ratios,
        )
    raise CacheError(f"{policy.strategy} is not a diffusers cache hook")


def _hooks(config: Any) -> tuple[Any, tuple[str, ...]]:
    """diffusers' apply function for a hook config and the names of the hooks it registers."""
    from diffusers import hooks
    from diffusers.hooks import first_block_cache, mag_cache, taylorseer_cache

    if isinstance(config, hooks.FirstBlockCacheConfig):
        names = (first_block_cache._FBC_LEADER_BLOCK_HOOK, first_block_cache._FBC_BLOCK_HOOK)
        return hooks.apply_first_block_cache, names
    if isinstance(config, hooks.TaylorSeerCacheConfig):
        return hooks.apply_taylorseer_cache, (taylorseer_cache._TAYLORSEER_CACHE_HOOK,)
    names = (mag_cache._MAG_CACHE_LEADER_BLOCK_HOOK, mag_cache._MAG_CACHE_BLOCK_HOOK)
    return hooks.apply_mag_cache, names


class DiffusersCacheDenoiser(Denoiser):
    """Runs the transformer with a diffusers cache hook for one loop and counts the blocks it skipped."""

    def __init__(self, model: Any, total_steps: int, policy: Any) -> None:
        super().__init__(model, total_steps)
        self.blocks = blocks_of(model)
        if not self.blocks:
            raise CacheError(f"{policy.strategy} caches transformer blocks; {type(model).__name__} has none")
        config = diffusers_config(policy, total_steps, model)
        apply, self._names = _hooks(config)
        self._had_forward = {id(m) for m in model.modules() if "forward" in vars(m)}
        self._ran = 0
        probes = [getattr(getattr(block, "attn", None), "to_q", None) or block for block in self.blocks]
        self._counters = [probe.register_forward_hook(self._count) for probe in probes]
        try:
            apply(model, config)
        except Exception:
            self._remove()
            raise
        from diffusers.hooks import HookRegistry  # its list of child registries is cached: renew it

        HookRegistry.check_if_exists_or_initialize(model).invalidate_child_registries_cache()

    def _count(self, *_args: Any) -> None:
        self._ran += 1

    def denoise(self, slot, step_index, sample, timestep, encoder_hidden_states, **kwargs):
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        before = self._ran
        context = CacheContext(f"pass{slot[0]}", step_index, self.total_steps, timestep)
        _set_cache_context(self.model, context)
        try:
            prediction = super().denoise(slot, step_index, sample, timestep, encoder_hidden_states, **kwargs)
        finally:
            _set_cache_context(self.model, None)
        self.total_blocks += len(self.blocks)
        self.skipped_blocks += len(self.blocks) - (self._ran - before)
        return prediction

    def close(self) -> None:
        super().close()
        self._remove()

    def _remove(self) -> None:
        from diffusers.hooks import HookRegistry

        for handle in self._counters:
            handle.remove()
        self._counters = []
        registry = HookRegistry.check_if_exists_or_initialize(self.model)
        for name in self._names:
            registry.remove_hook(name, recurse=True)
        registry.invalidate_child_registries_cache()
        for module in self.model.modules():  # diffusers puts the class's own forward back as an instance
            own = vars(module).get("forward")  # attribute; take it off, so the module is as it was
            bound = getattr(own, "__self__", None) is module
            if id(module) not in self._had_forward and bound and own.__func__ is type(module).forward:
                del module.forward
