"""Invert: a picture's latent back to the start of a sampling run (app/runtime/inversion.py), for editing by
prompt: Invert with the picture's own prompt, then a Sampler with an edited prompt samples down from there."""

from __future__ import annotations

import dataclasses

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import inversion
from app.runtime.values import Guider
from nodes._sampling import prepared


@node(
    "sampling.invert",
    title="Invert",
    category="sampling",
    inputs=[
        Input("model", T.MODEL, "The denoiser (SD1.x, SD2, SDXL; SD3 and Flux on flow-matching Euler)."),
        Input("positive", T.CONDITIONING, "What the picture shows: its own (source) prompt."),
        Input(
            "negative",
            T.CONDITIONING,
            "The negative prompt, when the guidance makes a negative pass.",
            optional=True,
        ),
        Input("latent", T.LATENT, "The picture's latent (VAE Encode)."),
        Input(
            "schedule",
            T.SCHEDULE,
            "A ddim Scheduler (euler for SD3 and Flux); connect the same one to the Sampler. denoise < 1 inverts "
            "part of the way.",
        ),
        Input(
            "guider",
            T.GUIDER,
            "Guidance while inverting (edit_friendly: CFG around 3.5 keeps the picture editable). Without "
            "one: the source prompt alone (CFG scale 1).",
            optional=True,
        ),
    ],
    outputs=[
        Output(
            "latent",
            T.LATENT,
            "The start latent carrying its inversion: a Sampler fed this samples down from it with its own "
            "prompt and guidance (the same prompt gives the picture back, an edited prompt edits it).",
        )
    ],
    params=[
        Param(
            "method",
            T.STRING,
            "edit_friendly",
            choices=inversion.METHODS,
            description="ddim: DDIM inversion (Euler run backwards on flow models; close, not exact); bdia: "
            "BDIA-DDIM, an exact round trip; edit_friendly: edit-friendly DDPM noise maps, an exact round trip "
            "that edits well.",
        ),
        Param(
            "gamma",
            T.FLOAT,
            1.0,
            min=0.05,
            max=1.0,
            step=0.05,
            when={"method": ("bdia",)},
            description="bdia: how much of the previous step's state each step keeps (1 = the paper's edit "
            "setting; lower is closer to DDIM).",
        ),
        Param(
            "seed",
            T.SEED,
            0,
            linkable=True,
            when={"method": ("edit_friendly",)},
            description="edit_friendly: the seed of the noise drawn around the picture at every level.",
        ),
    ],
)
def invert(ctx, model, positive, negative, latent, schedule, guider, method, gamma, seed):
    """Runs the inversion over the schedule's DDIM timesteps (reporting progress per model call) and
    returns the start latent with the inversion attached; bdia and edit_friendly resample exactly."""
    if latent.mask is not None:
        raise NodeError("the latent has a noise mask: invert the picture's plain latent (VAE Encode)")
    guider = guider or Guider(method="cfg", scale=1.0)
    with prepared(ctx, model, positive, negative, latent, schedule, guider) as run:
        start, inverted = inversion.invert(
            run.denoiser,
            run.scheduler,
            schedule,
            run.guidance,
            run.inputs,
            run.negative_inputs,
            latent.samples,
            method,
            gamma=gamma,
            seed=seed,
            hooks=run.hooks,
            family=run.family,
        )
    return {"latent": dataclasses.replace(latent, samples=start.float(), inversion=inverted)}
