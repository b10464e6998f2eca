"""Scheduler names -> diffusers scheduler classes and settings, and the timesteps of one sampling run.

The table is plain data so validation can check a schedule without torch; `make_scheduler` builds a fresh
scheduler (schedulers keep per-run state) from the model's own scheduler config plus the overrides, the way
`Scheduler.from_config(pipe.scheduler.config, ...)` swaps schedulers in diffusers. Nothing is re-implemented.
torch/diffusers are imported inside the functions; never import Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.runtime.values import Schedule


@dataclass(frozen=True)
class SchedulerKind:
    cls: str
    overrides: dict[str, Any] = field(default_factory=dict)
    karras: bool = False  # accepts use_karras_sigmas
    custom_timesteps: bool = False  # set_timesteps accepts an explicit timestep list
    description: str = ""


SCHEDULERS: dict[str, SchedulerKind] = {
    "ddim": SchedulerKind("DDIMScheduler", description="DDIM (Song et al. 2020), deterministic"),
    "ddpm": SchedulerKind("DDPMScheduler", custom_timesteps=True, description="DDPM ancestral sampling"),
    "pndm": SchedulerKind("PNDMScheduler", {"skip_prk_steps": True}, description="PLMS / PNDM"),
    "euler": SchedulerKind("EulerDiscreteScheduler", karras=True, custom_timesteps=True, description="Euler"),
    "euler_a": SchedulerKind("EulerAncestralDiscreteScheduler", description="Euler ancestral (stochastic)"),
    "heun": SchedulerKind(
        "HeunDiscreteScheduler",
        karras=True,
        custom_timesteps=True,
        description="Heun, 2 model calls per step",
    ),
    "dpmpp_2m": SchedulerKind(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        karras=True,
        custom_timesteps=True,
        description="DPM-Solver++ 2M (Lu et al. 2022)",
    ),
    "dpmpp_2m_sde": SchedulerKind(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        karras=True,
        custom_timesteps=True,
        description="DPM-Solver++ 2M SDE (stochastic)",
    ),
    "unipc": SchedulerKind("UniPCMultistepScheduler", karras=True, description="UniPC (Zhao et al. 2023)"),
    "deis": SchedulerKind("DEISMultistepScheduler", karras=True, description="DEIS (Zhang & Chen 2022)"),
    "lcm": SchedulerKind(
        "LCMScheduler", custom_timesteps=True, description="LCM: only for LCM-distilled weights"
    ),
}


def schedule_problems(schedule: Schedule) -> list[str]:
    """Why a schedule cannot run (torch-free), for the Scheduler node's validation."""
    kind = SCHEDULERS.get(schedule.scheduler)
    if kind is None:
        return [f"unknown scheduler {schedule.scheduler!r}; known: {', '.join(SCHEDULERS)}"]
    problems = []
    if schedule.karras and not kind.karras:
        problems.append(f"{schedule.scheduler} does not take karras sigmas (these do: {_with('karras')})")
    if schedule.timesteps and not kind.custom_timesteps:
        problems.append(
            f"{schedule.scheduler} does not take a custom timestep list (these do: {_with('custom_timesteps')})"
        )
    if schedule.timesteps and list(schedule.timesteps) != sorted(set(schedule.timesteps), reverse=True):
        problems.append("custom timesteps must be distinct and in decreasing order, e.g. 999, 850, 736")
    return problems


def _with(flag: str) -> str:
    return ", ".join(name for name, kind in SCHEDULERS.items() if getattr(kind, flag))


def parse_timesteps(text: str) -> tuple[int, ...]:
    """ "999, 850, 736" -> (999, 850, 736); raises ValueError on anything else."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"custom timesteps must be whole numbers separated by commas, got {text!r}"
        ) from None


def make_scheduler(schedule: Schedule, base_config: dict[str, Any]) -> Any:
    """A fresh diffusers scheduler for `schedule`, configured from the model's scheduler config."""
    import diffusers

    kind = SCHEDULERS[schedule.scheduler]
    overrides = dict(kind.overrides)
    if schedule.karras:
        overrides["use_karras_sigmas"] = True
    return getattr(diffusers, kind.cls).from_config(base_config, **overrides)


def timesteps(scheduler: Any, schedule: Schedule, device: Any) -> tuple[Any, int]:
    """Set the scheduler's timesteps for this run; returns (timesteps to run, number of steps).

    denoise < 1 keeps the last round(steps * denoise) steps, like StableDiffusionImg2ImgPipeline's strength.
    """
    if schedule.timesteps:
        scheduler.set_timesteps(timesteps=list(schedule.timesteps), device=device)
    else:
        scheduler.set_timesteps(schedule.steps, device=device)
    steps = len(scheduler.timesteps) // scheduler.order if schedule.timesteps else schedule.steps
    if schedule.denoise >= 1.0:
        return scheduler.timesteps, steps
    kept = min(int(steps * schedule.denoise), steps)
    start = max(steps - kept, 0)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    return scheduler.timesteps[start * scheduler.order :], steps - start
