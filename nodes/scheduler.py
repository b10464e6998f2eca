"""Scheduler: which diffusers scheduler, how many steps, sigma spacing, custom timesteps, denoise, flow shift
-> SCHEDULE."""

from __future__ import annotations

from typing import Any

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Output, Param, node
from app.runtime.schedulers import SCHEDULERS, SIGMA_SCHEDULES, parse_timesteps, schedule_problems
from app.runtime.values import Schedule


def _schedule(params: dict[str, Any]) -> Schedule:
    return Schedule(
        scheduler=params["scheduler"],
        steps=params["steps"],
        denoise=params["denoise"],
        sigmas="karras" if params["karras"] else params["sigmas"],
        timesteps=parse_timesteps(params["timesteps"]),
        shift=float(params["shift"]),
    )


def _validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    if params["karras"] and params["sigmas"] not in ("simple", "karras"):
        return [f"karras is on but sigmas is {params['sigmas']!r}; choose one spacing"]
    try:
        return schedule_problems(_schedule(params))
    except ValueError as error:
        return [str(error)]


@node(
    "sampling.scheduler",
    title="Scheduler",
    category="sampling",
    outputs=[Output("schedule", T.SCHEDULE, "Scheduler choice and timesteps, for the Sampler.")],
    params=[
        Param(
            "scheduler",
            T.STRING,
            "euler",
            choices=tuple(SCHEDULERS),
            description="; ".join(f"{name}: {kind.description}" for name, kind in SCHEDULERS.items()),
        ),
        Param("steps", T.INT, 20, min=1, max=1000, description="Number of denoising steps."),
        Param(
            "denoise",
            T.FLOAT,
            1.0,
            min=0.0,
            max=1.0,
            step=0.01,
            description="1 = start from pure noise; below 1 = img2img: keep that fraction of the steps, starting "
            "from the input latent with matching noise added.",
        ),
        Param(
            "karras",
            T.BOOL,
            False,
            description="Karras et al. 2022 sigma spacing (sigma-based schedulers only); the same as "
            "sigmas = karras, kept for graphs saved before the sigmas param.",
        ),
        Param(
            "sigmas",
            T.STRING,
            "simple",
            choices=SIGMA_SCHEDULES,
            description="Sigma spacing (ComfyUI's 'scheduler'): simple = the scheduler's own (what the "
            "diffusers pipelines use), karras, exponential, beta (sigma-based schedulers only).",
        ),
        Param(
            "timesteps",
            T.STRING,
            "",
            description="Custom timesteps, decreasing, e.g. Align-Your-Steps '999, 850, 736, 645, 545, 455, 343, "
            "233, 124, 24'; overrides steps. Empty = evenly spaced.",
        ),
        Param(
            "shift",
            T.FLOAT,
            0.0,
            min=0.0,
            max=100.0,
            step=0.05,
            description="Flow-matching models (SD3, Flux): the timestep shift; 0 = the checkpoint's own "
            "(SD3: 3.0; Flux dev: grows with the image size). Ignored by other models.",
        ),
    ],
    validate=_validate,
    measure=lambda params, _inputs: {"steps": float(params["steps"] * params["denoise"])},
)
def scheduler(ctx, scheduler, steps, denoise, karras, sigmas, timesteps, shift):
    """Chooses how the Sampler walks from noise to image: one of diffusers' schedulers, configured from the
    model's own scheduler settings. On a flow-matching model (SD3, Flux) each name is its flow-matching
    version (euler = FlowMatchEulerDiscreteScheduler, dpmpp_2m / unipc / deis = the solver on flow sigmas)
    with the checkpoint's shift unless `shift` sets one."""
    try:
        return {"schedule": _schedule(locals())}
    except ValueError as error:
        raise NodeError(str(error)) from None
