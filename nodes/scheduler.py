"""Scheduler: which diffusers scheduler, how many steps, karras sigmas, custom timesteps, denoise -> SCHEDULE."""

from __future__ import annotations

from typing import Any

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Output, Param, node
from app.runtime.schedulers import SCHEDULERS, parse_timesteps, schedule_problems
from app.runtime.values import Schedule


def _schedule(params: dict[str, Any]) -> Schedule:
    return Schedule(
        scheduler=params["scheduler"],
        steps=params["steps"],
        denoise=params["denoise"],
        karras=params["karras"],
        timesteps=parse_timesteps(params["timesteps"]),
    )


def _validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
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
            description="Karras et al. 2022 sigma spacing (sigma-based schedulers only).",
        ),
        Param(
            "timesteps",
            T.STRING,
            "",
            description="Custom timesteps, decreasing, e.g. Align-Your-Steps '999, 850, 736, 645, 545, 455, 343, "
            "233, 124, 24'; overrides steps. Empty = evenly spaced.",
        ),
    ],
    validate=_validate,
)
def scheduler(ctx, scheduler, steps, denoise, karras, timesteps):
    """Chooses how the Sampler walks from noise to image: one of diffusers' schedulers, configured from the
    model's own scheduler settings."""
    try:
        return {"schedule": _schedule(locals())}
    except ValueError as error:
        raise NodeError(str(error)) from None
