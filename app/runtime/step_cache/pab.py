"""The one adapter over diffusers' Pyramid Attention Broadcast hook (experimental API, pinned to diffusers 0.42.1).

PAB (Zhao et al. 2024, arXiv 2408.12588) reuses an attention module's output for a few calls instead of
recomputing it. diffusers attaches it as a stateful hook on every `Attention` module; on a UNet that means
each transformer block's self-attention (attn1) and cross-attention (attn2). This adapter:

- keys the skip range by step index (the hook asks a callback for "the current timestep"; we answer with the
  step index and give the range in steps), so it means the same under every scheduler;
- keeps one hook state per pass of a step (CFG cond/uncond, PAG...) by swapping the hooks' state objects, so
  one pass never reuses another pass's attention;
- counts skipped attention evaluations with the hook's own rule (mirrored from 0.42.1);
- removes the hooks on close and deletes what diffusers leaves behind (a `_diffusers_hook` registry and an
  instance `forward` on every hooked module), so the model comes back exactly as it was.

torch and diffusers only here; never import Qt.
"""

from __future__ import annotations

from typing import Any

from diffusers.hooks import HookRegistry, PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast
from diffusers.hooks.pyramid_attention_broadcast import (
    _PYRAMID_ATTENTION_BROADCAST_HOOK as HOOK_NAME,
)
from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastState

from app.runtime.step_cache.base import CacheError, Denoiser
from app.runtime.step_cache.policy import PyramidBroadcast


class PabDenoiser(Denoiser):
    """Attaches PAB hooks to `model` for one loop; `close` takes them off again."""

    def __init__(self, model: Any, total_steps: int, policy: PyramidBroadcast) -> None:
        super().__init__(model, total_steps, policy)
        # Broadcasting is allowed while low < step index < high (the hook's strict comparison).
        self.low, self.high = policy.start - 1, total_steps - policy.end
        self._before = {module: set(vars(module)) for module in model.modules()}
        self._states: dict[tuple, list[PyramidAttentionBroadcastState]] = {}
        config = PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=policy.self_interval,
            cross_attention_block_skip_range=policy.cross_interval,
            spatial_attention_timestep_skip_range=(self.low, self.high),
            cross_attention_timestep_skip_range=(self.low, self.high),
            current_timestep_callback=lambda: self._step,
        )
        try:
            apply_pyramid_attention_broadcast(model, config)
        except ValueError as error:
            self._undo()
            raise CacheError(f"pab could not hook this model: {error}") from error
        self.hooks = [
            module._diffusers_hook.get_hook(HOOK_NAME)
            for module in model.modules()
            if hasattr(module, "_diffusers_hook") and module._diffusers_hook.get_hook(HOOK_NAME) is not None
        ]
        if not self.hooks:
            self._undo()
            raise CacheError(f"pab found no attention modules in {type(model).__name__}")

    def denoise(self, slot, step_index, sample, timestep, encoder_hidden_states, **kwargs):
        states = self._states.setdefault(slot, [PyramidAttentionBroadcastState() for _ in self.hooks])
        for hook, state in zip(self.hooks, states, strict=True):
            hook.state = state
            if not self._computes(hook, state):
                self.skipped_blocks += 1
        self.total_blocks += len(self.hooks)
        return self.forward(
            self.model, sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs
        )

    def _computes(self, hook, state: PyramidAttentionBroadcastState) -> bool:
        """The hook's rule for "compute this call" (PyramidAttentionBroadcastHook.new_forward, 0.42.1)."""
        return (
            state.cache is None
            or state.iteration == 0
            or not self.low < self._step < self.high
            or state.iteration % hook.block_skip_range == 0
        )

    def close(self) -> None:
        super().close()
        self._states.clear()
        self._undo()

    def _undo(self) -> None:
        HookRegistry.check_if_exists_or_initialize(self.model).remove_hook(HOOK_NAME, recurse=True)
        for module, names in self._before.items():
            for name in set(vars(module)) - names:
                delattr(module, name)
