"""The denoising loop the Sampler node runs. Read it top to bottom:

    noise from the seed -> timesteps -> for each step:
        scale input -> guidance batches -> model -> combine -> scheduler step -> progress/preview -> cancel check

(a step slower than SUBSTEP_SECONDS also reports progress within itself, as its blocks finish)

It matches the family's diffusers pipeline (StableDiffusion[XL][Img2Img]Pipeline, StableDiffusion3Pipeline,
FluxPipeline) for the same components, scheduler, seed and settings (oracle tests in tests/nodes): the same
noise (one CPU generator, see seeding.py), the same generator handed to stochastic scheduler steps, the same
CFG batch order ([uncond, cond]), timesteps (the family's `timestep_options`: Flux's sigmas and shift) and
img2img start (`add_noise`, or `scale_noise` for flow-matching schedulers). The family says how the
denoiser is called (`forward`); the loop itself is the same for every family.

torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.engine.context import NodeError
from app.runtime import schedulers, seeding
from app.runtime.families import Family
from app.runtime.guidance import Pass
from app.runtime.step_cache import CachePolicy, NoCache, open_denoiser
from app.runtime.values import Schedule

PREVIEWS_PER_RUN = 5


@dataclass
class Hooks:
    """What the loop tells the outside world, and asks it: progress, previews, cancellation."""

    progress: Callable[[int, int], None] = lambda step, total: None
    preview: Callable[[Any, int, int], None] | None = None  # (latents, step, total)
    check_cancelled: Callable[[], None] = lambda: None
    report: Callable[..., None] = lambda **fields: None  # fields for the finished event


def sample(
    denoiser: Any,
    scheduler: Any,
    schedule: Schedule,
    guidance: Any,
    cond: dict[str, Any],
    uncond: dict[str, Any],
    latents: Any,
    seed: int,
    hooks: Hooks | None = None,
    cache: CachePolicy | None = None,
    control: Callable[..., dict[str, Any]] | None = None,
    family: type[Family] = Family,
    mask: Any = None,
    concat: Any = None,
) -> Any:
    """Denoise `latents` (B, C, h, w) with `denoiser` (a UNet or a DiT); returns the final latents.
    `cond`/`uncond` are the model inputs of the positive and negative branch by name
    (`family.model_inputs`: text embeddings of equal length, see text.even_out, plus what the family adds),
    each 1 or B long; `family.denoiser_kwargs` turns them into the arguments of `family.forward`. `cache`
    (from a Step Cache node) is applied for this loop only and the skipped blocks are reported as
    `skipped_blocks`. `control` (control.binder) gives the UNet the ControlNet residuals of each call.
    `mask` (1 or B, 1, h, w; 1 = repaint) keeps the rest of `latents`: after every step the kept part is
    the input noised to the next step's level, and the input itself after the last (Blended Latent Diffusion,
    as StableDiffusionInpaintPipeline does for 4-channel models). `concat` (1 or B, C', h, w) is appended to
    the model's input channels at every call: an inpainting model's mask and masked-picture latents."""
    import torch

    hooks = hooks or Hooks()
    param = next(denoiser.parameters())
    device, dtype = param.device, param.dtype
    batch = latents.shape[0]
    cond, uncond = repeat_inputs(cond, batch, device, dtype), repeat_inputs(uncond, batch, device, dtype)
    generator = seeding.cpu_generator(seed)
    options = family.timestep_options(scheduler, schedule.steps, tuple(latents.shape), denoiser.config)
    timesteps, _ = schedulers.timesteps(scheduler, schedule, device, options)
    total = len(timesteps)
    if total == 0:
        raise NodeError(
            f"denoise {schedule.denoise} leaves no steps out of {schedule.steps}; raise denoise or steps"
        )
    noise = seeding.initial_noise(tuple(latents.shape), generator, device, dtype)
    if schedule.denoise >= 1.0:
        x = noise * getattr(scheduler, "init_noise_sigma", 1.0)
    elif hasattr(scheduler, "scale_noise"):  # flow matching: (1 - sigma) * latents + sigma * noise
        x = scheduler.scale_noise(latents.to(device, dtype), timesteps[:1].repeat(batch), noise)
    else:
        x = scheduler.add_noise(latents.to(device, dtype), noise, timesteps[:1].repeat(batch))
    step_kwargs = _step_kwargs(scheduler, generator)
    every = max(1, total // PREVIEWS_PER_RUN)
    residuals = functools.partial(control, total=total) if control else no_control
    scale_input = getattr(scheduler, "scale_model_input", None) or (lambda x, t: x)
    with (
        torch.inference_mode(),
        open_denoiser(cache or NoCache(), denoiser, total, family.forward) as model,
        _within_steps(denoiser, hooks, total) as clock,
    ):
        for i, t in enumerate(timesteps):
            clock.start(i)
            x_in = scale_input(x, t)
            step = Step(model, denoiser, guidance, scheduler, residuals, family, i, total, concat)
            prediction = predict(step, x_in, t, cond, uncond)  # epsilon, v or flow: the model's kind
            x = scheduler.step(prediction, t, x, **step_kwargs, return_dict=False)[0]
            if mask is not None:
                x = _blend(scheduler, x, latents, noise, mask, timesteps, i)
            hooks.progress(i + 1, total)
            if hooks.preview is not None and ((i + 1) % every == 0 or i + 1 == total):
                hooks.preview(x, i + 1, total)
            hooks.check_cancelled()
    hooks.report(skipped_blocks=model.skipped_blocks, cache_total_blocks=model.total_blocks)
    return x


def _blend(scheduler: Any, x: Any, latents: Any, noise: Any, mask: Any, timesteps: Any, i: int) -> Any:
    """The repainted part from the loop, the kept part from the input at the next step's noise level."""
    kept = latents.to(x.device, x.dtype)
    if i + 1 < len(timesteps):
        level = timesteps[i + 1 : i + 2].repeat(x.shape[0])
        if hasattr(scheduler, "scale_noise"):
            kept = scheduler.scale_noise(kept, level, noise)
        else:
            kept = scheduler.add_noise(kept, noise, level)
    mask = mask.to(x.device, x.dtype)
    return (1 - mask) * kept + mask * x


SUBSTEP_SECONDS = 2.0  # a step slower than this reports progress within itself (huge sizes)
BLOCK_LISTS = ("down_blocks", "up_blocks", "transformer_blocks", "single_transformer_blocks")


class _StepClock:
    """Progress within a step: the denoiser's top-level blocks tick as they finish; once a step has run
    longer than SUBSTEP_SECONDS, each tick (at most a few a second) reports `step + fraction done`,
    the fraction measured against the block calls of the previous step."""

    def __init__(self, hooks: Hooks, total: int) -> None:
        self.hooks, self.total = hooks, total
        self.step, self.calls, self.expected, self.began, self.shown = 0, 0, 0, 0.0, 0.0

    def start(self, step: int) -> None:
        import time

        if step:
            self.expected = self.calls
        self.step, self.calls, self.began, self.shown = step, 0, time.monotonic(), 0.0

    def tick(self, *_args: Any) -> None:
        import time

        self.calls += 1
        now = time.monotonic()
        if not self.expected or now - self.began < SUBSTEP_SECONDS or now - self.shown < 0.25:
            return
        self.shown = now
        self.hooks.progress(round(self.step + min(self.calls / self.expected, 0.99), 2), self.total)


@contextlib.contextmanager
def _within_steps(denoiser: Any, hooks: Hooks, total: int) -> Iterator[_StepClock]:
    """The step clock, its hooks on the denoiser's blocks for this loop only (removed on any exit)."""
    clock = _StepClock(hooks, total)
    blocks = [b for name in BLOCK_LISTS for b in getattr(denoiser, name, None) or ()]
    mid = getattr(denoiser, "mid_block", None)
    handles = [
        block.register_forward_hook(clock.tick) for block in [*blocks, *([mid] if mid is not None else [])]
    ]
    try:
        yield clock
    finally:
        for handle in handles:
            handle.remove()


def no_control(*_args: Any) -> dict[str, Any]:
    return {}


@dataclass
class Step:
    """What one model prediction needs besides the sample: the (cached) model and its module, the guidance,
    the scheduler (some guidance methods read its sigmas), ControlNet residuals, the family, step i of total."""

    model: Any
    denoiser: Any
    guidance: Any
    scheduler: Any
    control: Callable[..., dict[str, Any]]
    family: type[Family]
    index: int
    total: int
    concat: Any = None  # extra input channels (an inpainting model's mask and masked picture)


def predict(step: Step, x_in: Any, t: Any, cond: dict[str, Any], uncond: dict[str, Any]) -> Any:
    """The guided prediction at (x_in, t): the guidance's passes through the model, combined."""
    passes = step.guidance.passes(step.index, step.total, t, cond, uncond)
    preds = _run_passes(step, x_in, t, passes)
    return step.guidance.combine(preds, step.index, x_in, step.scheduler)


def _run_passes(s: Step, x_in: Any, t: Any, passes: list[Pass]) -> list[Any]:
    """Model predictions for the passes, in order: one batched call when the guidance allows it."""
    import torch

    i = s.index
    if s.concat is not None:
        extra = s.concat.to(x_in.device, x_in.dtype)
        x_in = torch.cat([x_in, extra.expand(x_in.shape[0], *extra.shape[1:])], dim=1)
    if s.guidance.batched:
        count = len(passes)
        inputs = {name: torch.cat([p.inputs[name] for p in passes]) for name in passes[0].inputs}
        kwargs = s.family.denoiser_kwargs(inputs)
        x = torch.cat([x_in] * count) if count > 1 else x_in
        return list(s.model(i, x, t, **kwargs, **s.control(i, x, t, kwargs, count)).chunk(count))
    for p in passes:
        kwargs = s.family.denoiser_kwargs(p.inputs)
        s.guidance.enter(s.denoiser)
        try:
            p.state.noise_pred = s.model(i, x_in, t, **kwargs, **s.control(i, x_in, t, kwargs, 1))
        finally:
            s.guidance.leave(s.denoiser)
    return passes


def repeat_inputs(inputs: dict[str, Any], batch: int, device: Any, dtype: Any) -> dict[str, Any]:
    """Every input on the model's device and dtype, repeated to the latent batch when it has batch 1."""
    repeated = {}
    for name, value in inputs.items():
        value = value.to(device, dtype)
        if value.shape[0] != batch:
            if value.shape[0] != 1:
                raise NodeError(f"conditioning has batch {value.shape[0]}, latents have {batch}")
            value = value.repeat(batch, *([1] * (value.ndim - 1)))
        repeated[name] = value
    return repeated


def _step_kwargs(scheduler: Any, generator: Any) -> dict[str, Any]:
    """eta=0 and the generator, for the schedulers whose step takes them (as the pipelines do)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs
