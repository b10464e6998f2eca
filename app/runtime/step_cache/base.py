"""What every cache strategy shares: the error type, the base denoise callable (`Denoiser`), and
`open_denoiser`, which builds the denoiser a policy names and closes it when the sampling loop ends.

A policy (policy.py, plain data) names its denoiser class as "module:Class" in its `denoiser` class variable;
`open_denoiser` imports it only then, so policies stay torch-free and nothing imports in a circle. Every
denoiser is built as `Denoiser(model, total_steps, policy)` and called as
`denoise(step_index, sample, timestep, encoder_hidden_states, **model_kwargs)`, returning the model's
prediction tensor; the plain call goes through `forward(model, sample, timestep, **kwargs)`, the model
family's (app/runtime/families: a UNet's call by default, a DiT's with its own argument names). Calls within one step are told apart by their order and input shape, so a sampler may run
CFG as one batch or as separate passes (cond, uncond, PAG...) and each pass gets its own cache slot.

Pure Python at module level; denoisers import torch/diffusers in their own modules. Never import Qt here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class CacheError(ValueError):
    """A policy cannot be used as given (bad params, or a model the strategy does not support)."""


def unet_forward(model: Any, sample: Any, timestep: Any, **kwargs: Any) -> Any:
    """The plain call of a diffusers UNet2DConditionModel."""
    return model(sample, timestep, **kwargs).sample


class Denoiser:
    """Base denoise callable: the plain model call, with the bookkeeping every strategy shares.

    Attributes:
        skipped_blocks (int): block evaluations the strategy skipped in this loop (0 for the plain call).
        total_blocks (int): block evaluations the plain loop would have made, where the strategy knows them.
    """

    def __init__(self, model: Any, total_steps: int, policy: Any = None) -> None:
        self.model = model
        self.total_steps = total_steps
        self.skipped_blocks = 0
        self.total_blocks = 0
        self._open = True
        self._step = -1
        self._order = 0
        self.forward = unet_forward

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
        return self.forward(
            self.model, sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs
        )

    def close(self) -> None:
        """Undo whatever the denoiser attached to the model and drop cached tensors."""
        self._open = False


def check_int(name: str, value: Any, low: int) -> None:
    """A CacheError unless `value` is a whole number >= `low`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CacheError(f"{name} must be a whole number >= {low}, got {value!r}")


def check_steps(total_steps: int) -> None:
    check_int("total_steps", total_steps, 1)


@contextmanager
def open_denoiser(
    policy: Any, model: Any, total_steps: int, forward: Callable[..., Any] | None = None
) -> Iterator[Denoiser]:
    """Yield the denoiser `policy` names, on `model` for a loop of `total_steps`, calling the model through
    `forward` (default: a UNet's call); close it on exit, also when the loop raises (whatever it hooked
    into the model comes off)."""
    check_steps(total_steps)
    module, _, name = policy.denoiser.partition(":")
    denoiser = getattr(importlib.import_module(module), name)(model, total_steps, policy)
    if forward is not None:
        denoiser.forward = forward
    try:
        yield denoiser
    finally:
        denoiser.close()
