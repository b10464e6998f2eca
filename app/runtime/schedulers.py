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

TRAIN_TIMESTEPS = 1000  # every SD-class and flow model's num_train_timesteps
SIGMA_SCHEDULES = ("simple", "karras", "exponential", "beta")  # simple = the scheduler's own spacing
FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}  # a multistep solver on flow models


@dataclass(frozen=True)
class Variant:
    """One diffusers class for a scheduler name, with its fixed settings and what it takes."""

    cls: str
    overrides: dict[str, Any] = field(default_factory=dict)
    sigmas: bool = False  # accepts use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas
    custom_timesteps: bool = False  # set_timesteps accepts an explicit timestep list


@dataclass(frozen=True)
class SchedulerKind:
    """A scheduler name: its class on epsilon / v models (`diffusion`) and on flow-matching models (`flow`,
    None when diffusers has no flow version), so `euler` on Flux is flow-matching Euler."""

    description: str
    diffusion: Variant
    flow: Variant | None = None

    def variant(self, flow: bool) -> Variant | None:
        return self.flow if flow else self.diffusion


SCHEDULERS: dict[str, SchedulerKind] = {
    "ddim": SchedulerKind("DDIM (Song et al. 2020), deterministic", Variant("DDIMScheduler")),
    "ddpm": SchedulerKind("DDPM ancestral sampling", Variant("DDPMScheduler", custom_timesteps=True)),
    "pndm": SchedulerKind("PLMS / PNDM", Variant("PNDMScheduler", {"skip_prk_steps": True})),
    "euler": SchedulerKind(
        "Euler",
        Variant("EulerDiscreteScheduler", sigmas=True, custom_timesteps=True),
        Variant("FlowMatchEulerDiscreteScheduler", sigmas=True, custom_timesteps=True),
    ),
    "euler_a": SchedulerKind(
        "Euler ancestral (stochastic)",
        Variant("EulerAncestralDiscreteScheduler"),
        Variant(
            "FlowMatchEulerDiscreteScheduler",
            {"stochastic_sampling": True},
            sigmas=True,
            custom_timesteps=True,
        ),
    ),
    "heun": SchedulerKind(
        "Heun, 2 model calls per step",
        Variant("HeunDiscreteScheduler", sigmas=True, custom_timesteps=True),
        Variant("FlowMatchHeunDiscreteScheduler"),
    ),
    "dpmpp_2m": SchedulerKind(
        "DPM-Solver++ 2M (Lu et al. 2022)",
        Variant(
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2},
            sigmas=True,
            custom_timesteps=True,
        ),
        Variant(
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, **FLOW},
            sigmas=True,
            custom_timesteps=True,
        ),
    ),
    "dpmpp_2m_sde": SchedulerKind(
        "DPM-Solver++ 2M SDE (stochastic)",
        Variant(
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
            sigmas=True,
            custom_timesteps=True,
        ),
        Variant(
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **FLOW},
            sigmas=True,
            custom_timesteps=True,
        ),
    ),
    "unipc": SchedulerKind(
        "UniPC (Zhao et al. 2023)",
        Variant("UniPCMultistepScheduler", sigmas=True),
        Variant("UniPCMultistepScheduler", FLOW, sigmas=True),
    ),
    "deis": SchedulerKind(
        "DEIS (Zhang & Chen 2022)",
        Variant("DEISMultistepScheduler", sigmas=True),
        Variant("DEISMultistepScheduler", FLOW, sigmas=True),
    ),
    "lcm": SchedulerKind(
        "LCM: only for LCM-distilled weights",
        Variant("LCMScheduler", custom_timesteps=True),
        Variant("FlowMatchLCMScheduler", sigmas=True, custom_timesteps=True),
    ),
}


def schedule_problems(schedule: Schedule) -> list[str]:
    """Why a schedule cannot run on any model (torch-free), for the Scheduler node's validation; what
    only a flow-matching model refuses is `flow_problems`, asked when the model is known."""
    kind = SCHEDULERS.get(schedule.scheduler)
    if kind is None:
        return [f"unknown scheduler {schedule.scheduler!r}; known: {', '.join(SCHEDULERS)}"]
    problems = []
    if schedule.sigmas not in SIGMA_SCHEDULES:
        problems.append(f"unknown sigma schedule {schedule.sigmas!r}; known: {', '.join(SIGMA_SCHEDULES)}")
    elif schedule.sigmas != "simple" and not kind.diffusion.sigmas:
        problems.append(
            f"{schedule.scheduler} does not take {schedule.sigmas} sigmas (these do: {_with('sigmas')})"
        )
    if schedule.timesteps and not kind.diffusion.custom_timesteps:
        problems.append(
            f"{schedule.scheduler} does not take a custom timestep list (these do: {_with('custom_timesteps')})"
        )
    if schedule.timesteps and list(schedule.timesteps) != sorted(set(schedule.timesteps), reverse=True):
        problems.append("custom timesteps must be distinct and in decreasing order, e.g. 999, 850, 736")
    outside = [t for t in schedule.timesteps if not 0 <= t < TRAIN_TIMESTEPS]
    if outside:
        problems.append(
            f"custom timesteps must lie in 0..{TRAIN_TIMESTEPS - 1} (the models' {TRAIN_TIMESTEPS} training "
            f"steps); {outside[0]} does not"
        )
    if schedule.shift < 0:
        problems.append(f"shift must be 0 (the model's own) or positive, got {schedule.shift}")
    return problems


def flow_problems(schedule: Schedule) -> list[str]:
    """Why a schedule cannot run on a flow-matching model (SD3, Flux)."""
    kind = SCHEDULERS[schedule.scheduler]
    flow = kind.flow
    if flow is None:
        usable = ", ".join(name for name, k in SCHEDULERS.items() if k.flow)
        return [f"{schedule.scheduler} has no flow-matching version for this model; use one of {usable}"]
    problems = []
    if schedule.sigmas != "simple" and not flow.sigmas:
        problems.append(
            f"{schedule.scheduler} on a flow-matching model does not take {schedule.sigmas} sigmas"
        )
    if schedule.timesteps and not flow.custom_timesteps:
        problems.append(f"{schedule.scheduler} on a flow-matching model does not take custom timesteps")
    return problems


def _with(flag: str) -> str:
    return ", ".join(name for name, kind in SCHEDULERS.items() if getattr(kind.diffusion, flag))


def whole_numbers(text: str, rule: str) -> tuple[int, ...]:
    """ "999, 850; 736" -> (999, 850, 736): whole numbers separated by commas, semicolons or spaces; anything
    else raises ValueError(f"{rule}, got {text!r}")."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{rule}, got {text!r}") from None


def parse_timesteps(text: str) -> tuple[int, ...]:
    """ "999, 850, 736" -> (999, 850, 736); raises ValueError on anything else."""
    return whole_numbers(text, "custom timesteps must be whole numbers separated by commas")


def make_scheduler(schedule: Schedule, base_config: dict[str, Any], flow: bool = False) -> Any:
    """A fresh diffusers scheduler for `schedule`, configured from the model's scheduler config; on a
    flow-matching model (`flow`) the scheduler's flow version, with the checkpoint's shift (FlowMatch
    `shift`, the multistep solvers' `flow_shift`) unless the schedule sets one, which also turns the
    resolution-dependent (dynamic) shift off."""
    import diffusers

    variant = SCHEDULERS[schedule.scheduler].variant(flow)
    if variant is None:
        raise ValueError(flow_problems(schedule)[0])
    overrides = dict(variant.overrides)
    if schedule.sigmas != "simple":
        overrides[f"use_{schedule.sigmas}_sigmas"] = True
    if flow:
        shift = schedule.shift or base_config.get("shift", 1.0)
        overrides["flow_shift" if variant.overrides.get("use_flow_sigmas") else "shift"] = shift
        if schedule.shift:
            overrides["use_dynamic_shifting"] = False
    return getattr(diffusers, variant.cls).from_config(base_config, **overrides)


def timesteps(
    scheduler: Any, schedule: Schedule, device: Any, options: dict[str, Any] | None = None
) -> tuple[Any, int]:
    """Set the scheduler's timesteps for this run; returns (timesteps to run, number of steps).

    `options`: what the model family's pipeline also passes to `set_timesteps` (Flux: `sigmas` and `mu`),
    those the scheduler takes; explicit sigmas replace the step count, as diffusers' retrieve_timesteps
    does. denoise < 1 keeps the last round(steps * denoise) steps, like the img2img pipelines' strength.
    """
    import inspect

    accepted = set(inspect.signature(scheduler.set_timesteps).parameters)
    extra = {k: v for k, v in (options or {}).items() if k in accepted}
    if schedule.timesteps:
        extra.pop("sigmas", None)
        scheduler.set_timesteps(timesteps=list(schedule.timesteps), device=device, **extra)
    elif "sigmas" in extra:
        scheduler.set_timesteps(device=device, **extra)
    else:
        scheduler.set_timesteps(schedule.steps, device=device, **extra)
    steps = len(scheduler.timesteps) // scheduler.order if schedule.timesteps else schedule.steps
    if schedule.denoise >= 1.0:
        return scheduler.timesteps, steps
    kept = min(int(steps * schedule.denoise), steps)
    start = max(steps - kept, 0)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    return scheduler.timesteps[start * scheduler.order :], steps - start
