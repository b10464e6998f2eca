"""The denoise callables a policy yields for one sampling loop, and the context that opens and closes them.

`open_runner(policy, model, total_steps)` picks the runner for the policy's strategy. Every runner is called
as `denoise(step_index, sample, timestep, encoder_hidden_states, **unet_kwargs)` and returns the model's
prediction tensor. Calls within one step are told apart by their order and input shape, so a sampler may run
CFG as one batch or as separate passes (cond, uncond, PAG...) and each pass gets its own cache slot.

Imports torch lazily through the strategy modules; never import Qt here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.runtime.cache.policy import (
    AdaptiveCache,
    CacheError,
    CachePolicy,
    DeepCache,
    NoCache,
    PyramidBroadcast,
)


class Runner:
    """Base denoise callable: the plain model call, with the bookkeeping every strategy shares.

    Attributes:
        skipped_blocks (int): block evaluations the strategy skipped in this loop (0 for the plain call).
        total_blocks (int): block evaluations the plain loop would have made, where the strategy knows them.
    """

    def __init__(self, model: Any, total_steps: int) -> None:
        self.model = model
        self.total_steps = total_steps
        self.skipped_blocks = 0
        self.total_blocks = 0
        self._open = True
        self._step = -1
        self._order = 0

    def __call__(
        self, step_index: int, sample: Any, timestep: Any, encoder_hidden_states: Any, **kwargs: Any
    ):
        if not self._open:
            raise CacheError("this cached denoise was used after its sampling loop ended")
        if not 0 <= step_index < self.total_steps:
            raise CacheError(f"step index {step_index} is outside the loop's {self.total_steps} steps")
        if step_index != self._step:
            self._step, self._order = step_index, 0
        slot = (self._order, tuple(sample.shape))
        self._order += 1
        return self.denoise(slot, step_index, sample, timestep, encoder_hidden_states, **kwargs)

    def denoise(self, slot, step_index, sample, timestep, encoder_hidden_states, **kwargs):
        """One model call; `slot` names the cache entry of this pass (its order in the step and its shape)."""
        return self.model(sample, timestep, encoder_hidden_states, **kwargs).sample

    def close(self) -> None:
        """Undo whatever the runner attached to the model and drop cached tensors."""
        self._open = False


@contextmanager
def open_runner(policy: CachePolicy, model: Any, total_steps: int) -> Iterator[Runner]:
    """Yield the runner for `policy` on `model`; close it on exit, also when the loop raises."""
    runner = _make_runner(policy, model, total_steps)
    try:
        yield runner
    finally:
        runner.close()


def _make_runner(policy: CachePolicy, model: Any, total_steps: int) -> Runner:
    if isinstance(policy, (DeepCache, AdaptiveCache)):
        from app.runtime.cache.deepcache import DeepCacheRunner

        return DeepCacheRunner(model, total_steps, policy.full_steps(total_steps), policy.branch)
    if isinstance(policy, PyramidBroadcast):
        from app.runtime.cache.pab import PabRunner

        return PabRunner(model, total_steps, policy)
    if type(policy) in (NoCache, CachePolicy):
        return Runner(model, total_steps)
    raise CacheError(f"no runner for cache strategy {policy.strategy!r}")
