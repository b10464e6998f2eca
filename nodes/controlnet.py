"""Load ControlNet and Apply ControlNet: a ControlNet (diffusers folder or single .safetensors) attached to a
CONDITIONING as a hint; the Sampler adds its residuals (app/runtime/control.py).

The family of a ControlNet is read from its config without loading weights: sd15 / sd2 / sdxl for the
standard architectures; a small one names its base model's family in a `nodeloom.json` beside its config
({"family": "tiny-shapes"}), else it is "tiny-<folder name>". The engine refuses a CONTROL_NET whose family
differs from the CONDITIONING's at Apply ControlNet. No torch import at module level; never import Qt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.engine.context import NodeError
from app.files import FileProblem, FileResolver
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import checkpoints, control
from app.runtime.values import CheckpointSource, Conditioning

SDXL_KEYS = ("add_embedding.linear_1.weight", "control_model.label_emb.0.0.weight", "label_emb.0.0.weight")


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
    for folder in checkpoints.config_dirs():
        if (folder / name / "config.json").is_file():
            return folder / name
    raise ControlNetProblem(f"{path.name}: ControlNet config skeleton {name!r} not found in models/configs")


def family_of(path: Path, config: str = "auto") -> str:
    """sd15 / sd2 / sdxl from the config's architecture, else the family named in nodeloom.json."""
    folder = config_folder(path, config)
    try:
        cfg = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise ControlNetProblem(f"{folder}: cannot read config.json ({error})") from None
    channels = list(cfg.get("block_out_channels", []))
    if cfg.get("addition_embed_type") == "text_time" and channels == [320, 640, 1280]:
        return "sdxl"
    if channels == [320, 640, 1280, 1280] and cfg.get("cross_attention_dim") in (768, 1024):
        return "sd15" if cfg["cross_attention_dim"] == 768 else "sd2"
    sidecar = (path if path.is_dir() else path.parent) / "nodeloom.json"
    if sidecar.is_file():
        return str(json.loads(sidecar.read_text("utf-8"))["family"])
    stem = path.name.removesuffix(".safetensors")
    return stem if stem.startswith("tiny-") else f"tiny-{stem}"


def _family(params: dict[str, Any], _inputs: dict[str, str | None]) -> str | None:
    return family_of(FileResolver().resolve("model:controlnet", params["controlnet"]), params["config"])


def _validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    try:
        family_of(FileResolver().resolve("model:controlnet", params["controlnet"]), params["config"])
    except (ControlNetProblem, checkpoints.CheckpointProblem, FileProblem, KeyError) as error:
        return [str(error)]
    return []


def read(source: CheckpointSource, torch_dtype: Any) -> Any:
    """The ControlNetModel of a source, offline (a single file goes through its local config skeleton)."""
    from diffusers import ControlNetModel

    if not source.config:
        return ControlNetModel.from_pretrained(source.path, torch_dtype=torch_dtype, local_files_only=True)
    return ControlNetModel.from_single_file(
        source.path, config=source.config, torch_dtype=torch_dtype, local_files_only=True
    )


def load_net(ctx, handle: control.ControlNetHandle) -> Any:
    """The handle's ControlNetModel on this run's device, loaded once per process by the model manager."""
    from app.runtime import device as devices
    from app.runtime.models import manager

    return manager().load_module("controlnet", handle.source, devices.torch_device(ctx.device), read)


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
        load_net(ctx, handle)
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
def apply_controlnet(ctx, conditioning: Conditioning, control_net, image, strength, start, end, guess_mode):
    """Attaches a ControlNet and its prepared control image to the conditioning; the Sampler adds its
    residuals on the steps inside [start, end]. Chain two Apply nodes for multi-ControlNet (residuals add)."""
    if start > end:
        raise NodeError(f"start {start} is after end {end}")
    hint = control.Hint(
        control_net, control.prepare_image(image), float(strength), float(start), float(end), bool(guess_mode)
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
