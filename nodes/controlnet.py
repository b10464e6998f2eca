"""Load ControlNet and Apply ControlNet: a ControlNet (diffusers folder or single .safetensors) attached to a
CONDITIONING as a hint; the Sampler adds its residuals (app/runtime/control.py).

Its family is read from its config without loading weights (app/runtime/controlnets.py); the engine refuses
a CONTROL_NET whose family differs from the CONDITIONING's at Apply ControlNet. No torch import at module
level; never import Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.engine.context import NodeError
from app.files import FileProblem, FileResolver
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import checkpoints, control
from app.runtime.controlnets import ControlNetProblem, config_folder, family_of, latent_config
from app.runtime.values import CheckpointSource, Conditioning
from nodes import _measure
from nodes._diffusion import controlnet_module
from nodes.latent import vae_encode


def _family(params: dict[str, Any], _inputs: dict[str, str | None]) -> str | None:
    return family_of(FileResolver().resolve("model:controlnet", params["controlnet"]), params["config"])


def _validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    path = Path(params["controlnet"])  # resolved already
    try:
        family_of(path, params["config"])
    except (ControlNetProblem, checkpoints.CheckpointProblem, FileProblem, KeyError) as error:
        return [str(error)]
    why = checkpoints.pickle_only(path) if path.is_dir() else None
    return [why] if why else []


@node(
    "control.load",
    title="Load ControlNet",
    category="loaders",
    disk_cache=False,
    outputs=[Output("control_net", T.CONTROL_NET, "The ControlNet, for Apply ControlNet.")],
    params=[
        Param(
            "controlnet",
            T.STRING,
            "tiny-random-sd15-canny",
            path="model:controlnet",
            description="A diffusers ControlNet folder (config.json + weights) or a .safetensors file, under "
            "models/controlnet (or assets/models/controlnet).",
        ),
        Param(
            "config",
            T.STRING,
            "auto",
            description="Single files only: the config skeleton folder (models/configs or assets/configs); "
            "auto = controlnet-sd15, or controlnet-sdxl for SDXL keys.",
        ),
    ],
    family=_family,
    validate=_validate,
    measure=lambda params, _inputs: _measure.weights(params["controlnet"]),
)
def load_controlnet(ctx, controlnet, config):
    """Loads a ControlNet once per process (never downloads anything) and records its model family, so it
    is refused on a model of another family before anything runs."""
    path = Path(controlnet)
    try:
        skeleton = "" if path.is_dir() else str(config_folder(path, config))
        family = family_of(path, config)
    except (ControlNetProblem, checkpoints.CheckpointProblem) as error:
        raise NodeError(str(error)) from None
    handle = control.ControlNetHandle(
        CheckpointSource(str(path), checkpoints.weights_fingerprint(path), skeleton), family
    )
    try:
        controlnet_module(ctx, handle)
    except (OSError, ValueError) as error:
        raise NodeError(f"cannot load ControlNet {path}: {error}") from None
    return {"control_net": handle}


@node(
    "control.apply",
    title="Apply ControlNet",
    category="conditioning",
    inputs=[
        Input("conditioning", T.CONDITIONING, "The prompt to steer (usually the positive one)."),
        Input("control_net", T.CONTROL_NET, "From Load ControlNet."),
        Input("image", T.IMAGE, "The control image (e.g. from Canny), ideally at the output size."),
        Input(
            "vae",
            T.VAE,
            "SD3 ControlNets only: the model's VAE, which encodes the control image to latents as their "
            "pipeline does (ComfyUI's Apply ControlNet `vae` input).",
            optional=True,
        ),
    ],
    outputs=[Output("conditioning", T.CONDITIONING, "The prompt with this ControlNet attached.")],
    params=[
        Param("strength", T.FLOAT, 1.0, min=0.0, max=10.0, step=0.05, description="Conditioning scale."),
        Param(
            "start", T.FLOAT, 0.0, min=0.0, max=1.0, step=0.01, description="First fraction of the schedule."
        ),
        Param("end", T.FLOAT, 1.0, min=0.0, max=1.0, step=0.01, description="Last fraction of the schedule."),
        Param(
            "guess_mode",
            T.BOOL,
            False,
            description="Only the positive half goes through the ControlNet, with weaker shallow residuals.",
        ),
    ],
)
def apply_controlnet(
    ctx, conditioning: Conditioning, control_net, image, vae, strength, start, end, guess_mode
):
    """Attaches a ControlNet and its prepared control image to the conditioning; the Sampler adds its
    residuals on the steps inside [start, end]. Chain two Apply nodes for multi-ControlNet (residuals add).
    An SD3 ControlNet gets the control image VAE-encoded (the distribution's mode, so it caches)."""
    if start > end:
        raise NodeError(f"start {start} is after end {end}")
    try:
        config = latent_config(Path(control_net.source.path))
    except ControlNetProblem as error:
        raise NodeError(str(error)) from None
    latents = config is not None
    if latents and vae is None:
        raise NodeError(
            "this SD3 ControlNet takes the control image as latents: connect the model's VAE to vae"
        )
    if latents and guess_mode:
        raise NodeError("guess mode is for UNet ControlNets; turn it off for this SD3 ControlNet")
    if latents:
        prepared = vae_encode(ctx, image, vae)["latent"].samples
        instantx = config["_class_name"] == "SD3ControlNetModel" and config.get(
            "force_zeros_for_pooled_projection", True
        )
        if instantx:  # InstantX's SD3 ControlNets take z * scale, without the VAE's shift
            prepared = prepared + vae.latent_shift * vae.latent_scale
    else:
        prepared = control.prepare_image(image)
    hint = control.Hint(
        control_net, prepared, float(strength), float(start), float(end), bool(guess_mode), latents
    )
    return {
        "conditioning": Conditioning(
            conditioning.embeddings,
            conditioning.family,
            conditioning.pooled,
            conditioning.pad,
            (*conditioning.hints, hint),
        )
    }
