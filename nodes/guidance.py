"""Guidance: how the Sampler steers towards the prompt (CFG and its variants) -> GUIDER."""

from __future__ import annotations

from typing import Any

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime.guidance import DEFAULT_LAYERS, METHODS, guider_problems, layer_problem
from app.runtime.values import Guider
from nodes import _measure
from nodes._diffusion import load

OPTIONS = ("rescale", "start", "stop", "perturbed_scale", "layers", "delta", "true_cfg")


def _guider(params: dict[str, Any], family: str | None = None) -> Guider:
    return Guider(params["method"], params["scale"], {k: params[k] for k in OPTIONS}, family)


def _validate(params: dict[str, Any], inputs: dict[str, str | None]) -> list[str]:
    return guider_problems(_guider(params), inputs.get("model"))


@node(
    "sampling.guidance",
    title="Guidance",
    category="sampling",
    inputs=[Input("model", T.MODEL, "The model this guidance is for (methods that patch layers check it).")],
    outputs=[Output("guider", T.GUIDER, "For the Sampler.")],
    params=[
        Param(
            "method",
            T.STRING,
            "cfg",
            choices=tuple(METHODS),
            description="; ".join(f"{name}: {m.description}" for name, m in METHODS.items()),
        ),
        Param(
            "scale",
            T.FLOAT,
            7.5,
            min=0.0,
            max=100.0,
            step=0.1,
            description="Guidance scale (1 = off for cfg).",
        ),
        Param(
            "rescale",
            T.FLOAT,
            0.0,
            min=0.0,
            max=1.0,
            step=0.05,
            when={
                "method": (
                    "cfg",
                    "cfg_zero_star",
                    "tangential",
                    "apg",
                    "pag",
                    "skip_layer",
                    "seg",
                    "auto_guidance",
                )
            },
            description="Guidance rescale (arXiv 2305.08891); 0 = off.",
        ),
        Param(
            "start",
            T.FLOAT,
            0.0,
            min=0.0,
            max=0.99,
            step=0.01,
            when={
                "method": ("cfg_zero_star", "tangential", "apg", "pag", "skip_layer", "seg", "auto_guidance")
            },
            description="Diffusers guiders: fraction of steps before guidance starts.",
        ),
        Param(
            "stop",
            T.FLOAT,
            1.0,
            min=0.0,
            max=1.0,
            step=0.01,
            when={
                "method": ("cfg_zero_star", "tangential", "apg", "pag", "skip_layer", "seg", "auto_guidance")
            },
            description="Diffusers guiders: fraction of steps after which guidance stops.",
        ),
        Param(
            "perturbed_scale",
            T.FLOAT,
            2.8,
            min=0.0,
            max=100.0,
            step=0.1,
            when={"method": ("pag", "skip_layer", "seg")},
            description="pag, skip_layer, seg: scale of the perturbed-branch term.",
        ),
        Param(
            "layers",
            T.STRING,
            DEFAULT_LAYERS,
            when={"method": ("pag", "skip_layer", "seg", "auto_guidance")},
            description="pag, skip_layer, seg, auto_guidance: UNet block path and indices, 'path:0,1'.",
        ),
        Param(
            "delta",
            T.FLOAT,
            1.0,
            min=0.0,
            max=2.0,
            step=0.05,
            when={"method": ("rcfg_self", "rcfg_onetime")},
            description="rcfg_*: scale of the virtual negative noise (StreamDiffusion's delta).",
        ),
        Param(
            "true_cfg",
            T.FLOAT,
            1.0,
            min=1.0,
            max=100.0,
            step=0.1,
            description="Flux only: real CFG with the negative prompt at this scale (FluxPipeline's "
            "true_cfg_scale); 1 = off, one pass per step. `scale` is Flux dev's distilled guidance.",
        ),
    ],
    validate=_validate,
    measure=lambda params, _inputs: _measure.guidance(params, METHODS[params["method"]].layers is not None),
)
def guidance(ctx, model, method, scale, rescale, start, stop, perturbed_scale, layers, delta, true_cfg):
    """Classifier-free guidance by default; also CFG-Zero*, tangential CFG, APG, PAG, skip-layer, SEG and
    autoguidance (diffusers' guiders) and StreamDiffusion's residual CFG. Params a method does not use are
    ignored. On Flux, `scale` is the distilled guidance the transformer reads (dev; schnell has none) and no
    negative pass is made unless `true_cfg` is above 1."""
    guider = _guider(locals(), model.family)
    if METHODS[method].layers is not None:  # the layer path is checked here, against the model's blocks
        loaded, _ = load(ctx, model.source)
        problem = layer_problem(loaded.denoiser, layers)
        if problem:
            raise NodeError(problem)
    return {"guider": guider}
