"""VAEs on their own (models/vae): which latent space a file belongs to, from its header, and reading it.

A VAE is a diffusers folder (config.json + weights) or one .safetensors file, in the original (LDM) key
layout with or without `first_stage_model.`, or in diffusers' layout. A single file is read through the
`vae/` config of a skeleton (assets/configs or <root>/configs). "auto" reads the header: a 16-channel VAE
is SD3's when its name or metadata says SD3, else Flux's (`ae.safetensors`); a 4-channel one is SDXL's
when its metadata or file name says XL, else SD1.x/SD2's. Within each pair the weights have the same
shapes and only the latent scale and shift differ, so the `config` param is the way to say otherwise.
The family of a VAE is the latent space it encodes to ("sd", "sdxl", "sd3", "flux", or a tiny model's
own family; see app/graph/types.LATENT_SPACES), so one VAE serves SD1.5 and SD2 models alike.

Pure Python except `read`, which imports diffusers inside; never import Qt here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.files import FileResolver
from app.graph.types import latent_space
from app.runtime import checkpoints
from app.runtime.checkpoints import CheckpointProblem, read_json, safetensors_header
from app.runtime.values import CheckpointSource

ENCODER_OUT = "encoder.conv_out.weight"
SCALES = {0.13025: "sdxl", 0.18215: "sd", 1.5305: "sd3", 0.3611: "flux"}


def skeleton_name(path: Path, config: str) -> str:
    """The skeleton whose vae/config.json describes the single file at `path`."""
    if config != "auto":
        return config
    header = safetensors_header(path)
    shape = next((v.get("shape") for k, v in header.items() if k.endswith(ENCODER_OUT)), None)
    if shape is None:
        raise CheckpointProblem(
            f"{path.name}: no {ENCODER_OUT} in it: not a VAE (or name its config skeleton)"
        )
    said = path.name.lower() + json.dumps(header.get("__metadata__") or {}).lower()
    if shape[0] == 32:
        return "sd3-medium" if "sd3" in said or "sd 3" in said else "flux-dev"
    if shape[0] != 8:
        raise CheckpointProblem(
            f"{path.name}: a {shape[0] // 2}-channel VAE; 4-channel and 16-channel ones load here"
        )
    return "sdxl" if "xl" in said else "sd15"


def config_folder(path: Path, config: str, resolver: FileResolver | None = None) -> Path:
    """The folder holding the VAE's config.json: the diffusers folder itself, or a skeleton's vae/."""
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointProblem(f"{path} has no config.json (not a diffusers VAE folder)")
        return path
    if path.suffix != ".safetensors":
        raise CheckpointProblem(
            f"{path.name}: only .safetensors single files are loaded (pickles can run code)"
        )
    return checkpoints.find_config(path, skeleton_name(path, config), "vae/config.json", resolver) / "vae"


def family_of(path: Path, config: str = "auto", resolver: FileResolver | None = None) -> str:
    """The latent space of the VAE at `path` ("sd", "sdxl" or a tiny model's family)."""
    folder = config_folder(path, config, resolver)
    named = checkpoints.sidecar_family(path) if path.is_dir() else None
    if named:
        return named
    if not path.is_dir():
        skeleton = folder.parent
        if not (skeleton / "model_index.json").is_file():  # a VAE-only skeleton: its name says the space
            return latent_space(skeleton.name)
        return latent_space(checkpoints.family_of_config(skeleton, skeleton.name))
    scale = read_json(folder / "config.json").get("scaling_factor")
    return SCALES.get(scale, f"tiny-{path.name}")


def source(
    path: Path, config: str, fingerprint: str, resolver: FileResolver | None = None
) -> CheckpointSource:
    """Where the VAE's weights are, with the skeleton folder a single file needs."""
    folder = "" if path.is_dir() else str(config_folder(path, config, resolver).parent)
    return CheckpointSource(str(path), fingerprint, folder)


def read(source: CheckpointSource, torch_dtype: Any) -> Any:
    """The AutoencoderKL of a source, offline."""
    from diffusers import AutoencoderKL

    if not source.config:
        return AutoencoderKL.from_pretrained(source.path, torch_dtype=torch_dtype, local_files_only=True)
    return AutoencoderKL.from_single_file(
        source.path, config=source.config, subfolder="vae", torch_dtype=torch_dtype, local_files_only=True
    )
