"""Inverting a picture's latent into the start of a sampling run, and sampling from that start (the Invert node,
then the Sampler). Three methods, on the DDIM levels of the schedule (SD1.x/SD2/SDXL, any prediction type) or,
for flow-matching models (SD3, Flux), on the flow-matching Euler sigmas, where a DDIM move is an Euler step:

- `ddim`: DDIM inversion, as diffusers' DDIMInverseScheduler loop (the model is asked at the level it steps
  to); resampling is plain DDIM, so the round trip is close, not exact.
- `bdia`: BDIA-DDIM (Zhang et al., "Exact diffusion inversion via bi-directional integration approximation"):
  z[k-1] = D(z[k] -> k-1) + gamma * (z[k+1] - D(z[k] -> k+1)), with D the DDIM move of z[k] by its own
  prediction. Each update is solved exactly for z[k+1], so inverting the pair (z[0], z[1]) up to
  (z[N], z[N-1]) and sampling down again gives z[0] back to rounding. z[1] comes from one DDIM inversion step.
- `edit_friendly`: edit-friendly DDPM (Huberman-Spiegelglas et al.): x[k] are drawn independently around
  the latent (seeded), and each step's residual x[k-1] - mean(x[k]) is kept (the noise map times sigma);
  resampling adds them back after each DDPM mean, so the same prompt gives the latent back and another
  prompt edits it while keeping its structure.

Levels: a[k] = alphas_cumprod at the schedule's k-th timestep from the clean end (k = 1..N), a[0] = the
scheduler's final alpha; on a flow model the sigmas (sigma[0] = 0). torch is imported inside functions; never import Qt here.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.engine.codec import persistable
from app.engine.context import NodeError
from app.runtime import sampling, schedulers, seeding
from app.runtime.families import Family
from app.runtime.step_cache import NoCache, open_denoiser
from app.runtime.values import Schedule

METHODS = ("ddim", "bdia", "edit_friendly")


@persistable
@dataclass(frozen=True)
class Inversion:
    """How a latent was inverted: the method, the timesteps it ran on (sampling order), the start at the
    loop's working precision (the LATENT holds it as float32), BDIA's gamma and the state one level below the
    start (`below`), or edit-friendly DDPM's residuals (sampling order)."""

    method: str
    timesteps: tuple[Any, ...]
    start: Any = None
    gamma: float = 1.0
    below: Any = None
    residuals: tuple[Any, ...] = ()


@dataclass
class _Run:
    """One loop's fixed parts: the model, how to ask it at step i, the levels, the inputs."""

    predict: Callable[[int, Any, Any], Any]  # (step index, x, timestep) -> the guided model output
    timesteps: list[Any]  # sampling order, N entries
    levels: Any  # (N + 1,) level 0 (clean end) .. N: alphas_cumprod (DDIM) or sigmas (flow)
    prediction_type: str  # epsilon, v_prediction, sample, or flow

    def level(self, k: int) -> Any:
        """The timestep of level k (1..N), counted from the clean end."""
        return self.timesteps[len(self.timesteps) - k]

    def split(self, output: Any, x: Any, k: int) -> tuple[Any, Any]:
        """(predicted clean latent, predicted noise) from the model's output at level k."""
        return _split(output, x, self.levels[k], self.prediction_type)

    def at(self, x0: Any, eps: Any, k: int) -> Any:
        """The point at level k between a clean latent and a noise."""
        return _mix(x0, eps, self.levels[k], self.prediction_type)

    def moves(self, x: Any, k: int, *levels: int) -> list[Any]:
        """x at level k moved to each of `levels` by the model's one prediction at (x, level k): DDIM, or
        flow-matching Euler (the same move on a rectified flow)."""
        x0, eps = self.split(self.predict(k, x, self.level(k)), x, k)
        return [self.at(x0, eps, to) for to in levels]


def _split(output: Any, x: Any, a: Any, prediction_type: str) -> tuple[Any, Any]:
    if prediction_type == "flow":  # x = (1 - s) x0 + s eps, v = eps - x0
        return x - a * output, x + (1 - a) * output
    if prediction_type == "epsilon":
        return (x - (1 - a).sqrt() * output) / a.sqrt(), output
    if prediction_type == "v_prediction":
        return a.sqrt() * x - (1 - a).sqrt() * output, a.sqrt() * output + (1 - a).sqrt() * x
    if prediction_type == "sample":
        return output, (x - a.sqrt() * output) / (1 - a).sqrt()
    raise NodeError(f"inversion does not know the prediction type {prediction_type!r}")


def _mix(x0: Any, eps: Any, level: Any, prediction_type: str) -> Any:
    if prediction_type == "flow":
        return (1 - level) * x0 + level * eps
    return level.sqrt() * x0 + (1 - level).sqrt() * eps


def invert(
    denoiser: Any,
    scheduler: Any,
    schedule: Schedule,
    guidance: Any,
    cond: dict[str, Any],
    uncond: dict[str, Any],
    latents: Any,
    method: str,
    gamma: float = 1.0,
    seed: int = 0,
    hooks: sampling.Hooks | None = None,
    family: type[Family] = Family,
) -> tuple[Any, Inversion]:
    """Invert `latents` (B, C, h, w) on `scheduler` (a DDIMScheduler) over the schedule's timesteps; returns
    the start latent and the Inversion the Sampler resamples with."""
    import torch

    hooks = hooks or sampling.Hooks()
    with _loop(denoiser, scheduler, schedule, guidance, cond, uncond, latents, family) as (run, x):
        n = len(run.timesteps)
        if method == "ddim":
            for k in range(1, n + 1):  # from level k-1 to k, asking the model at level k, as diffusers does
                x = _step_up(run, x, k)
                _tick(hooks, k, n)
            return x, Inversion(method, tuple(run.timesteps), start=x)
        if method == "bdia":
            lower, x = x, _step_up(run, x, 1)
            _tick(hooks, 1, n)
            for k in range(1, n):  # the BDIA update solved for z[k+1]
                up, down = run.moves(x, k, k + 1, k - 1)
                lower, x = x, up + (lower - down) / gamma
                _tick(hooks, k + 1, n)
            return x, Inversion(method, tuple(run.timesteps), start=x, gamma=gamma, below=lower)
        if method == "edit_friendly":
            generator = seeding.cpu_generator(seed)
            noisy = [x]  # x[0] = the latent, x[k] = sqrt(a[k]) x + sqrt(1 - a[k]) noise[k], noise drawn per k
            for k in range(1, n + 1):
                noise = seeding.initial_noise(tuple(x.shape), generator, x.device, torch.float32).to(x.dtype)
                noisy.append(run.at(x, noise, k))
            residuals = []
            for k in range(n, 0, -1):
                residuals.append(noisy[k - 1] - _ddpm_mean(run, noisy[k], k))
                _tick(hooks, n - k + 1, n)
            start = noisy[n]
            return start, Inversion(method, tuple(run.timesteps), start=start, residuals=tuple(residuals))
    raise NodeError(f"unknown inversion method {method!r}; use one of {', '.join(METHODS)}")


def resample(
    denoiser: Any,
    scheduler: Any,
    schedule: Schedule,
    guidance: Any,
    cond: dict[str, Any],
    uncond: dict[str, Any],
    start: Any,
    inversion: Inversion,
    hooks: sampling.Hooks | None = None,
    family: type[Family] = Family,
    control: Callable[..., dict[str, Any]] | None = None,
) -> Any:
    """Sample down from an inverted `start` with these prompts and guidance (the same ones give the inverted
    latent back: exactly for bdia and edit_friendly)."""
    hooks = hooks or sampling.Hooks()
    exact = inversion.start
    if exact is not None and exact.shape == start.shape and bool((exact.to(start) == start).all()):
        start = exact  # the latent as the Invert node left it: resume at the loop's precision
    loop = _loop(denoiser, scheduler, schedule, guidance, cond, uncond, start, family, control)
    with loop as (run, x):
        if tuple(run.timesteps) != inversion.timesteps:
            raise NodeError(
                f"this schedule runs timesteps {_short(run.timesteps)} but the latent was inverted over "
                f"{_short(inversion.timesteps)}: connect the Invert node's Scheduler to this Sampler too"
            )
        n = len(run.timesteps)
        if inversion.method == "bdia":
            upper, x = x, inversion.below.to(x.device, x.dtype)
            for k in range(n - 1, 0, -1):
                down, up = run.moves(x, k, k - 1, k + 1)
                upper, x = x, down + inversion.gamma * (upper - up)
                _tick(hooks, n - k, n - 1, x)
            return x
        for k in range(n, 0, -1):
            if inversion.method == "edit_friendly":
                x = _ddpm_mean(run, x, k) + inversion.residuals[n - k].to(x.device, x.dtype)
            else:
                (x,) = run.moves(x, k, k - 1)
            _tick(hooks, n - k + 1, n, x)
        return x


def _step_up(run: _Run, x: Any, k: int) -> Any:
    """One inversion step from level k-1 to k with the model asked at level k (DDIMInverseScheduler; on a
    flow model, Euler run backwards)."""
    x0, eps = _split(run.predict(k, x, run.level(k)), x, run.levels[k - 1], run.prediction_type)
    return run.at(x0, eps, k)


def _ddpm_mean(run: _Run, x: Any, k: int) -> Any:
    """The DDPM posterior mean from level k to k-1 (DDIM with eta = 1, no noise); on a flow model the
    deterministic Euler move (the residuals then carry all of the noise)."""
    x0, eps = run.split(run.predict(k, x, run.level(k)), x, k)
    if run.prediction_type == "flow":
        return run.at(x0, eps, k - 1)
    a, a_prev = run.levels[k], run.levels[k - 1]
    variance = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
    return a_prev.sqrt() * x0 + (1 - a_prev - variance).clamp(min=0).sqrt() * eps


def _tick(hooks: sampling.Hooks, done: int, total: int, x: Any = None) -> None:
    hooks.progress(done, total)
    if x is not None and hooks.preview is not None and done == total:
        hooks.preview(x, done, total)
    hooks.check_cancelled()


def _short(timesteps) -> str:
    steps = list(timesteps)
    return f"[{', '.join(map(str, steps[:3]))}{', ...' if len(steps) > 3 else ''}] ({len(steps)} steps)"


@contextlib.contextmanager
def _loop(denoiser, scheduler, schedule, guidance, cond, uncond, latents, family, control=None):
    """One inversion or resampling loop: inputs on the model's device, the timesteps and levels, the model
    under inference mode (no step cache: predictions must be exact to be inverted). The trajectory is kept
    in float64 (float32 on MPS): the model sees the same rounded input on the way up and down, so the
    round trip is exact to far below float32's step."""
    import torch

    wanted = "euler" if family.flow else "ddim"
    if schedule.scheduler != wanted:
        raise NodeError(
            f"inversion runs on {'flow-matching Euler' if family.flow else 'DDIM'} for a {family.name} model: "
            f"set the Scheduler to {wanted}"
        )
    param = next(denoiser.parameters())
    device, dtype = param.device, param.dtype
    work = torch.float32 if device.type == "mps" else torch.float64  # the trajectory's arithmetic
    batch = latents.shape[0]
    cond = sampling.repeat_inputs(cond, batch, device, dtype)
    uncond = sampling.repeat_inputs(uncond, batch, device, dtype)
    options = family.timestep_options(scheduler, schedule.steps, tuple(latents.shape), denoiser.config)
    steps, _ = schedulers.timesteps(scheduler, schedule, device, options)
    if not len(steps):
        raise NodeError(f"denoise {schedule.denoise} leaves no steps out of {schedule.steps}")
    total = len(steps)
    residuals = functools.partial(control, total=total) if control else sampling.no_control
    if family.flow:
        timesteps = [float(t) for t in steps]
        sigmas = scheduler.sigmas.to(device, work)[-(total + 1) :]  # this run's steps and the clean end
        levels = sigmas.flip(0)
        kind, time_dtype = "flow", torch.float32
    else:
        timesteps = [int(t) for t in steps]
        table = scheduler.alphas_cumprod.to(device, work)
        clean = torch.as_tensor(scheduler.final_alpha_cumprod, device=device).to(work)
        levels = torch.stack([clean, *[table[t] for t in reversed(timesteps)]])
        kind, time_dtype = scheduler.config.prediction_type, torch.long
    with torch.inference_mode(), open_denoiser(NoCache(), denoiser, total, family.forward) as model:

        def ask(k: int, x: Any, t: Any) -> Any:
            step = sampling.Step(model, denoiser, guidance, scheduler, residuals, family, total - k, total)
            time = torch.tensor(t, device=device, dtype=time_dtype)
            return sampling.predict(step, x.to(dtype), time, cond, uncond).to(work)

        yield _Run(ask, timesteps, levels, kind), latents.to(device, work)
