"""What a ControlNet file or folder is, read from its config without loading weights, and reading it.

The family is sd15 / sd2 / sdxl for the standard architectures, sd3 for an SD3ControlNetModel folder; a small one names its base model's family
in a `nodeloom.json` beside its config ({"family": "tiny-shapes"}), else it is "tiny-<folder name>".
A single .safetensors file is described by a skeleton config (models/configs or assets/configs; auto =
controlnet-sd15, or controlnet-sdxl for SDXL keys). Pure Python except `read`; never import Qt here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.runtime import checkpoints
from app.runtime.values import CheckpointSource

SDXL_KEYS = ("add_embedding.linear_1.weight", "control_model.label_emb.0.0.weight", "label_emb.0.0.weight")
# ControlNets of diffusion transformers, by their diffusers class: they take the control image as latents
LATENT_CONTROLNETS = {"SD3ControlNetModel": "sd3", "FluxControlNetModel": "flux"}


class ControlNetProblem(ValueError):
    """A ControlNet that cannot be used; the message names the file."""


def config_folder(path: Path, config: str) -> Path:
    """The folder whose config.json describes the ControlNet: the diffusers folder itself, or the skeleton
    of a single file (in models/configs or assets/configs; auto = controlnet-sd15 or controlnet-sdxl)."""
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ControlNetProblem(f"{path} has no config.json (not a diffusers ControlNet folder)")
        return path
    if path.suffix != ".safetensors":
        raise ControlNetProblem(f"{path.name}: only .safetensors single files are loaded")
    name = config
    if config == "auto":
        keys = set(checkpoints.safetensors_keys(path))
        name = "controlnet-sdxl" if keys.intersection(SDXL_KEYS) else "controlnet-sd15"
    return checkpoints.find_config(path, name, "config.json")


def family_of(path: Path, config: str = "auto") -> str:
    """sd15 / sd2 / sdxl from the config's architecture, else the family named in nodeloom.json."""
    cfg = checkpoints.read_json(config_folder(path, config) / "config.json")
    if cfg.get("_class_name") in LATENT_CONTROLNETS:
        if not path.is_dir():
            raise ControlNetProblem(f"{path.name}: {cfg['_class_name']} loads from a diffusers folder only")
        return checkpoints.sidecar_family(path) or LATENT_CONTROLNETS[cfg["_class_name"]]
    channels = cfg.get("block_out_channels")
    if cfg.get("addition_embed_type") == "text_time" and channels == [320, 640, 1280]:
        return "sdxl"
    if channels == [320, 640, 1280, 1280] and cfg.get("cross_attention_dim") in (768, 1024):
        return "sd15" if cfg["cross_attention_dim"] == 768 else "sd2"
    named = checkpoints.sidecar_family(path if path.is_dir() else path.parent)
    if named:
        return named
    stem = path.name.removesuffix(".safetensors")
    return stem if stem.startswith("tiny-") else f"tiny-{stem}"


def latent_config(path: Path) -> dict[str, Any] | None:
    """The config of a diffusion transformer's ControlNet, which takes the control image VAE-encoded; None
    for a UNet ControlNet. (InstantX-style SD3 ControlNets, `force_zeros_for_pooled_projection`, take the
    latents without the VAE's shift and zeros for the pooled text, as their pipeline gives them.)"""
    if not path.is_dir():
        return None
    config = checkpoints.read_json(path / "config.json")
    if config.get("_class_name") not in LATENT_CONTROLNETS:
        return None
    if config.get("conditioning_embedding_channels") is not None:
        raise ControlNetProblem(
            f"{path.name}: an XLabs-style Flux ControlNet (it takes the picture itself) is not supported yet"
        )
    if config.get("num_mode") is not None:
        raise ControlNetProblem(
            f"{path.name}: Flux union ControlNets (with control modes) are not supported yet"
        )
    if config.get("use_pos_embed") is False:
        raise ControlNetProblem(
            f"{path.name}: a ControlNet sharing the transformer's position embedding (SD3.5 Large's) is not "
            "supported yet"
        )
    return config


def read(source: CheckpointSource, torch_dtype: Any) -> Any:
    """The ControlNet of a source, offline (a single file goes through its local config skeleton)."""
    import diffusers
    from diffusers import ControlNetModel

    if not source.config:
        name = checkpoints.read_json(Path(source.path) / "config.json").get("_class_name")
        cls = getattr(diffusers, name) if name in LATENT_CONTROLNETS else ControlNetModel
        return cls.from_pretrained(source.path, torch_dtype=torch_dtype, local_files_only=True)
    return ControlNetModel.from_single_file(
        source.path, config=source.config, torch_dtype=torch_dtype, local_files_only=True
    )
