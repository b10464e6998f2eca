"""Block-delta caching on a diffusion transformer (Δ-DiT's mechanism): a block that is skipped at a step returns
its input plus the change it made on its last computed call (its output delta, per stream: image tokens and,
for joint blocks, text tokens). Consecutive skipped blocks thus add the delta of their whole range. Which
blocks are skipped at which step is the policy's `reused(step, total_steps, block_count)`.

Blocks are wrapped for one sampling loop (their `forward` is replaced on the instance) and restored when it
ends, also on an error, so the shared model is never left changed. Deltas are kept per pass of a step (cond,
uncond, ... by their order and shape, see base.Denoiser). SD3's and Flux's blocks (joint and single) all take
keyword streams and return (encoder_hidden_states, hidden_states); SD3's last block returns no text stream.

torch is only used on tensors the model passes; never import Qt here.
"""

from __future__ import annotations

import functools
from typing import Any

from app.runtime.step_cache.base import CacheError, Denoiser

BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")


def adaptive_denoiser(model: Any, total_steps: int, policy: Any) -> Denoiser:
    """An AdaptiveCache's denoiser: per-block deltas on a DiT, DeepCache's deep feature on a UNet."""
    if any(getattr(model, name, None) for name in BLOCK_LISTS):
        return BlockDeltaDenoiser(model, total_steps, policy)
    from app.runtime.step_cache.deepcache import DeepCacheDenoiser

    return DeepCacheDenoiser(model, total_steps, policy)


def blocks_of(model: Any) -> list[Any]:
    """A DiT's blocks in call order (Flux: the double blocks, then the single ones)."""
    return [b for name in BLOCK_LISTS for b in getattr(model, name, [])]


class BlockDeltaDenoiser(Denoiser):
    def __init__(self, model: Any, total_steps: int, policy: Any) -> None:
        super().__init__(model, total_steps)
        self.policy = policy
        self.blocks = blocks_of(model)
        if not self.blocks:
            raise CacheError(f"{policy.strategy} caches transformer blocks; {type(model).__name__} has none")
        self._deltas: dict[tuple[Any, int], tuple[Any, Any]] = {}
        self._slot: Any = None
        self._reused: frozenset[int] = frozenset()
        self._skipped_now = 0
        policy.reused(0, total_steps, len(self.blocks))  # a plan for another model is refused here
        self._own = [block.__dict__.get("forward") for block in self.blocks]  # a forward set on the instance
        for index, block in enumerate(self.blocks):
            block.forward = functools.partial(self._block, index, block.forward)

    def denoise(self, slot, step_index, sample, timestep, encoder_hidden_states, **kwargs):
        self._slot, self._skipped_now = slot, 0
        self._reused = self.policy.reused(step_index, self.total_steps, len(self.blocks))
        prediction = super().denoise(slot, step_index, sample, timestep, encoder_hidden_states, **kwargs)
        self.total_blocks += len(self.blocks)
        self.skipped_blocks += self._skipped_now
        return prediction

    def _block(self, index: int, original: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        text = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        key = (self._slot, index)
        if index in self._reused and key in self._deltas:
            self._skipped_now += 1
            text_delta, hidden_delta = self._deltas[key]
            return (None if text_delta is None else text + text_delta), hidden + hidden_delta
        text_out, hidden_out = original(*args, **kwargs)
        text_delta = None if text_out is None or text is None else text_out - text
        self._deltas[key] = (text_delta, hidden_out - hidden)
        return text_out, hidden_out

    def close(self) -> None:
        super().close()
        for block, own in zip(self.blocks, self._own, strict=True):
            if own is None:
                block.__dict__.pop("forward", None)  # the class's forward again
            else:
                block.forward = own
        self._deltas.clear()


def first_block_denoiser(model: Any, total_steps: int, policy: Any) -> Denoiser:
    """A FirstBlockCache's denoiser: diffusers' hook where it runs (Flux), ours where it cannot (SD3, whose
    last joint block returns no text stream, which diffusers' hook needs)."""
    last = getattr(model, "transformer_blocks", [None])[-1]
    if getattr(last, "context_pre_only", False):
        return FirstBlockDenoiser(model, total_steps, policy)
    from app.runtime.step_cache.dit import DiffusersCacheDenoiser

    return DiffusersCacheDenoiser(model, total_steps, policy)


class FirstBlockDenoiser(BlockDeltaDenoiser):
    """First-block cache on the block wrapper: every call runs the first block; when its change to the image
    tokens moved less than `threshold` (mean absolute difference over mean absolute value, as diffusers'
    hook measures it) since the last call that ran every block, the other blocks add their cached deltas."""

    def __init__(self, model: Any, total_steps: int, policy: Any) -> None:
        self._head: dict[Any, Any] = {}  # slot -> the first block's image-token change at the last full call
        super().__init__(model, total_steps, _Nothing())
        self.threshold = policy.threshold

    def _block(self, index: int, original: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if index != 0:
            return super()._block(index, original, *args, **kwargs)
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        text_out, hidden_out = original(*args, **kwargs)
        change = hidden_out - hidden
        head = self._head.get(self._slot)
        same = head is not None and (change - head).abs().mean() < self.threshold * head.abs().mean()
        self._reused = frozenset(range(1, len(self.blocks))) if same else frozenset()
        if not same:
            self._head[self._slot] = change
        return text_out, hidden_out

    def close(self) -> None:
        super().close()
        self._head.clear()


class _Nothing:
    """A plan that reuses nothing (the first-block cache decides per call)."""

    def reused(self, step: int, total_steps: int, count: int) -> frozenset[int]:
        return frozenset()
