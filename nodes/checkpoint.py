"""Loaders: Load Checkpoint (a diffusers folder or single .safetensors file -> MODEL, CLIP, VAE handles) and
Load VAE (a VAE on its own, replacing a checkpoint's). The families they run on live in app/runtime/families.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.engine.context import NodeError
from app.files import FileProblem, FileResolver
from app.graph import types as T
from app.graph.spec import Output, Param, node
from app.runtime import checkpoints, vaes
from app.runtime.families import pixels_per_latent
from app.runtime.values import CheckpointSource, ClipHandle, ModelHandle, VaeHandle
from nodes import _measure
from nodes._diffusion import load, vae_module


def _skeleton(path: Path, config: str) -> Path | None:
    return None if checkpoints.is_diffusers_folder(path) else checkpoints.find_skeleton(path, config)


def _family(params: dict[str, Any], _inputs: dict[str, str | None]) -> str | None:
    path = FileResolver().resolve("model:checkpoints", params["checkpoint"])
    return checkpoints.family_of(path, params["config"])


def _measure_checkpoint(params: dict[str, Any]) -> dict[str, float]:
    path = Path(params["checkpoint"])
    architecture = checkpoints.architecture(_skeleton(path, params["config"]) or path)
    return _measure.denoiser(path, architecture.denoiser == "transformer", architecture.name == "flux")


def _validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    path = Path(params["checkpoint"])
    if path.is_dir() and not checkpoints.is_diffusers_folder(path):
        return [f"{path} is a folder without model_index.json (not a diffusers checkpoint)"]
    try:
        skeleton = _skeleton(path, params["config"])
        folder = skeleton or path
        family = checkpoints.architecture(folder)
    except (checkpoints.CheckpointProblem, FileProblem) as error:
        return [str(error)]
    optional = {e.part for e in family.encoders if e.optional}
    missing = [p for p in (*family.parts(), "scheduler") if p not in optional and not (folder / p).is_dir()]
    if missing:
        return [f"{folder} has no {', '.join(missing)} folder(s), which a {family.name} checkpoint needs"]
    if skeleton is None:
        return [why for part in family.parts() if (why := checkpoints.pickle_only(path / part))]
    return []


@node(
    "model.checkpoint",
    title="Load Checkpoint",
    category="loaders",
    disk_cache=False,
    outputs=[
        Output("model", T.MODEL, "The denoiser (UNet) and its scheduler settings."),
        Output("clip", T.CLIP, "Tokenizers + text encoders, for Text Encode."),
        Output("vae", T.VAE, "The autoencoder, for VAE Encode/Decode and Empty Latent."),
    ],
    params=[
        Param(
            "checkpoint",
            T.STRING,
            "tiny-shapes",
            path="model:checkpoints",
            description="A diffusers folder (with model_index.json) or a .safetensors file, under the model roots "
            "(models/checkpoints, A1111's models/Stable-diffusion, $NODELOOM_MODEL_ROOTS, assets/models). "
            "Default: the embedded tiny-shapes model (64x64 pictures of shapes).",
        ),
        Param(
            "config",
            T.STRING,
            "auto",
            description="Single files only: the config skeleton folder (in models/configs or assets/configs); "
            "auto = from the file's keys: sd15, sd2, sdxl, sdxl_refiner, or for an all-in-one SD3 / Flux file "
            "(ComfyUI's checkpoints) sd3-medium, sd3.5-medium, sd3.5-large, flux-dev or flux-schnell.",
        ),
    ],
    family=_family,
    validate=_validate,
    measure=lambda params, _inputs: _measure_checkpoint(params),
)
def load_checkpoint(ctx, checkpoint, config):
    """Loads a checkpoint (SD1.x, SD2, SDXL, SDXL refiner, SD3 / SD3.5, Flux.1) once per process, shared by
    every node that uses it, and gives handles to its parts (ComfyUI: CheckpointLoaderSimple). Never downloads
    anything: single files use a local config skeleton and the shipped CLIP tokenizers."""
    path = Path(checkpoint)
    try:
        skeleton = _skeleton(path, config)
        family = checkpoints.family_of(path, config)
    except checkpoints.CheckpointProblem as error:
        raise NodeError(str(error)) from None
    source = CheckpointSource(str(path), checkpoints.weights_fingerprint(path), str(skeleton or ""))
    try:
        loaded, _ = load(ctx, source)
    except (OSError, ValueError) as error:
        raise NodeError(f"cannot load {path}: {error}") from None
    scheduler_config = dict(loaded.scheduler_config)
    prediction = "flow" if loaded.family.flow else scheduler_config.get("prediction_type", "epsilon")
    return {
        "model": ModelHandle(source, family, prediction, scheduler_config),
        "clip": ClipHandle(source, family),
        "vae": _vae_handle(source, family, loaded.vae.config),
    }


def _vae_handle(source: CheckpointSource, family: str, config: Any, standalone: bool = False) -> VaeHandle:
    return VaeHandle(
        source,
        family,
        pixels_per_latent=pixels_per_latent(config),
        latent_channels=config.latent_channels,
        latent_scale=float(config.scaling_factor),
        standalone=standalone,
        latent_shift=float(getattr(config, "shift_factor", None) or 0.0),
    )


def _vae_family(params: dict[str, Any], _inputs: dict[str, str | None]) -> str | None:
    return vaes.family_of(FileResolver().resolve("model:vae", params["vae_name"]), params["config"])


def _vae_validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    path = Path(params["vae_name"])
    try:
        vaes.family_of(path, params["config"])
    except (checkpoints.CheckpointProblem, FileProblem) as error:
        return [str(error)]
    why = checkpoints.pickle_only(path) if path.is_dir() else None
    return [why] if why else []


@node(
    "model.vae",
    title="Load VAE",
    category="loaders",
    disk_cache=False,
    outputs=[Output("vae", T.VAE, "The autoencoder, in place of a checkpoint's (VAE Encode/Decode).")],
    params=[
        Param(
            "vae_name",
            T.STRING,
            "",
            path="model:vae",
            description="A VAE under models/vae (A1111: models/VAE): a .safetensors file or a diffusers folder.",
        ),
        Param(
            "config",
            T.STRING,
            "auto",
            description="Single files only: the config skeleton whose vae/ describes it (sd15, sdxl, ...). auto: "
            "SDXL when the file's name or metadata says XL, else SD1.x/SD2 (their VAEs have the same shapes).",
        ),
    ],
    family=_vae_family,
    validate=_vae_validate,
    measure=lambda params, _inputs: _measure.vae_weights(params["vae_name"]),
)
def load_vae(ctx, vae_name, config):
    """Loads a VAE on its own (ComfyUI: VAELoader), e.g. a fixed SDXL VAE or a sharper SD1.5 one, to use in
    place of a checkpoint's. Its latent space is checked against the model's before anything runs; in fp16
    runs it stays in fp32, as SD and SDXL VAEs overflow in fp16."""
    path = Path(vae_name)
    try:
        family = vaes.family_of(path, config)
        source = vaes.source(path, config, checkpoints.weights_fingerprint(path))
    except checkpoints.CheckpointProblem as error:
        raise NodeError(str(error)) from None
    try:
        module = vae_module(ctx, VaeHandle(source, family, standalone=True))
    except (OSError, ValueError) as error:
        raise NodeError(f"cannot load VAE {path}: {error}") from None
    return {"vae": _vae_handle(source, family, module.config, standalone=True)}
