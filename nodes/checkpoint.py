"""Load Checkpoint: a diffusers folder or a single .safetensors file -> MODEL, CLIP, VAE handles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.engine.context import NodeError
from app.files import FileProblem, FileResolver
from app.graph import types as T
from app.graph.spec import Output, Param, node
from app.runtime import checkpoints
from app.runtime.values import CheckpointSource, ClipHandle, ModelHandle, VaeHandle
from nodes._diffusion import load


def _skeleton(path: Path, config: str) -> Path | None:
    return None if checkpoints.is_diffusers_folder(path) else checkpoints.find_skeleton(path, config)


def _family(params: dict[str, Any], _inputs: dict[str, str | None]) -> str | None:
    path = FileResolver().resolve("model:checkpoints", params["checkpoint"])
    return checkpoints.family_of(path, params["config"])


def _validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    path = Path(params["checkpoint"])
    try:
        if path.is_file() and params["config"] == "auto" and checkpoints.detect_layout(path) == "sdxl":
            return [
                f"{path.name} is an SDXL checkpoint; this version samples sd15, sd2 and tiny-* models (SDXL: not yet)"
            ]
        if path.is_dir() and not checkpoints.is_diffusers_folder(path):
            return [f"{path} is a folder without model_index.json (not a diffusers checkpoint)"]
        skeleton = _skeleton(path, params["config"])
        family = checkpoints.family_of(path, params["config"])
    except (checkpoints.CheckpointProblem, FileProblem) as error:
        return [str(error)]
    folder = skeleton or path
    missing = [
        p for p in ("unet", "vae", "text_encoder", "scheduler", "tokenizer") if not (folder / p).is_dir()
    ]
    if skeleton is not None and missing == ["tokenizer"]:
        return [
            f"config skeleton {skeleton} has no tokenizer/ folder: copy the tokenizer files of a {family} "
            "diffusers model (vocab.json, merges.txt, tokenizer_config.json) there"
        ]
    if missing:
        return [
            f"{folder} has no {', '.join(missing)} folder(s); Load Checkpoint needs a Stable Diffusion layout"
        ]
    if family not in checkpoints.SUPPORTED_FAMILIES and not family.startswith("tiny-"):
        return [
            f"{path.name} is an {family} checkpoint; this version samples sd15, sd2 and tiny-* models (SDXL: not yet)"
        ]
    return []


@node(
    "model.checkpoint",
    title="Load Checkpoint",
    category="loaders",
    disk_cache=False,
    outputs=[
        Output("model", T.MODEL, "The denoiser (UNet) and its scheduler settings."),
        Output("clip", T.CLIP, "Tokenizer + text encoder, for Text Encode."),
        Output("vae", T.VAE, "The autoencoder, for VAE Encode/Decode and Empty Latent."),
    ],
    params=[
        Param(
            "checkpoint",
            T.STRING,
            "tiny-random-sd15",
            path="model:checkpoints",
            description="A diffusers folder (with model_index.json) or a .safetensors file, under the model roots "
            "(models/checkpoints, A1111's models/Stable-diffusion, $NODELOOM_MODEL_ROOTS, assets/models).",
        ),
        Param(
            "config",
            T.STRING,
            "auto",
            description="Single files only: the config skeleton folder (in models/configs or assets/configs); "
            "auto = sd15, sd2 or sdxl from the file's keys.",
        ),
    ],
    family=_family,
    validate=_validate,
)
def load_checkpoint(ctx, checkpoint, config):
    """Loads a Stable Diffusion checkpoint once per process (shared by every node that uses it) and gives
    handles to its parts. Never downloads anything: single files use a local config skeleton."""
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
    vae_config = loaded.vae.config
    scheduler_config = dict(loaded.scheduler_config)
    return {
        "model": ModelHandle(
            source, family, scheduler_config.get("prediction_type", "epsilon"), scheduler_config
        ),
        "clip": ClipHandle(source, family),
        "vae": VaeHandle(
            source,
            family,
            scale_factor=2 ** (len(vae_config.block_out_channels) - 1),
            latent_channels=vae_config.latent_channels,
            scaling_factor=float(vae_config.scaling_factor),
        ),
    }
