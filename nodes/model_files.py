"""Loaders for models kept as separate files, ComfyUI's way (models/diffusion_models, models/text_encoders):
Load Diffusion Model (-> MODEL), Dual CLIP and Triple CLIP (-> CLIP). With Load VAE they make a Flux or
SD3 graph from split files; the parts are read by app/runtime/components.py against a config skeleton.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from app.engine.context import NodeError
from app.files import FileProblem, FileResolver
from app.graph import types as T
from app.graph.spec import Output, Param, node
from app.runtime import checkpoints, components
from app.runtime.values import CheckpointSource, ClipHandle, ModelHandle
from nodes import _measure
from nodes._diffusion import load

CONFIG = Param(
    "config",
    T.STRING,
    "auto",
    description="The config skeleton (assets/configs or models/configs) naming the architecture; auto = "
    "read from the file (flux-dev, flux-schnell, sd3-medium, sd3.5-medium, sd3.5-large).",
)
CLIP_TYPES = {"flux": "flux-dev", "sd3": "sd3-medium"}  # Dual CLIP's `type` -> the skeleton its parts fit
SINGLE_CLIP_TYPES = {"stable_diffusion": "sd15", "sd2": "sd2"}  # Load CLIP's: models with one text encoder


def _skeleton(params: dict[str, Any], path: Path, default: str | None = None) -> Path:
    """The skeleton folder a split file is read with (auto: from its header, or the type's default)."""
    name = params["config"]
    if name == "auto":
        name = default or components.diffusion_model_skeleton(path)
    return checkpoints.find_config(path, name, "model_index.json")


def _family(skeleton: Path) -> str:
    return checkpoints.family_of_config(skeleton, skeleton.name)


def _fingerprint(paths: list[Path]) -> str:
    text = "".join(checkpoints.weights_fingerprint(path) for path in paths)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _model_family(params: dict[str, Any], _inputs: dict[str, str | None]) -> str | None:
    path = FileResolver().resolve("model:diffusion_models", params["unet_name"])
    return _family(_skeleton(params, path))


def _model_problems(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    path = Path(params["unet_name"])
    if path.suffix != ".safetensors":
        return [
            f"{path.name}: a diffusion model is a .safetensors file (pickles can run code; GGUF is not read)"
        ]
    try:
        architecture = checkpoints.architecture(_skeleton(params, path))
    except (checkpoints.CheckpointProblem, FileProblem) as error:
        return [str(error)]
    return [] if architecture.denoiser == "transformer" else [f"{path.name}: Load Diffusion Model reads DiTs"]


@node(
    "model.diffusion_model",
    title="Load Diffusion Model",
    category="loaders",
    disk_cache=False,
    outputs=[Output("model", T.MODEL, "The diffusion transformer and its scheduler settings.")],
    params=[
        Param(
            "unet_name",
            T.STRING,
            "",
            path="model:diffusion_models",
            description="A diffusion model on its own (ComfyUI: models/diffusion_models or models/unet): Flux.1 "
            "in Black Forest Labs' or diffusers' layout, SD3 / SD3.5 in Stability's or diffusers'; fp8 "
            "files are upcast to the run's precision.",
        ),
        CONFIG,
    ],
    family=_model_family,
    validate=_model_problems,
    measure=lambda params, _inputs: _measure.denoiser(
        params["unet_name"],
        True,
        checkpoints.architecture(_skeleton(params, Path(params["unet_name"]))).name == "flux",
    ),
)
def load_diffusion_model(ctx, unet_name, config):
    """Loads a diffusion transformer from its own file (ComfyUI: UNETLoader / Load Diffusion Model), once per
    process. Pair it with Dual CLIP (or Triple CLIP) and Load VAE. Sizes that vary between models of one
    family (layers, width, SD3.5's dual attention) are read from the file, so one skeleton serves them all."""
    path = Path(unet_name)
    try:
        skeleton = _skeleton({"config": config}, path)
        family = _family(skeleton)
        architecture = checkpoints.architecture(skeleton)
    except checkpoints.CheckpointProblem as error:
        raise NodeError(str(error)) from None
    source = CheckpointSource(
        str(path), _fingerprint([path]), str(skeleton), parts=((architecture.denoiser, str(path)),)
    )
    loaded = _load(ctx, source)
    return {
        "model": ModelHandle(
            source, family, "flow" if architecture.flow else "epsilon", dict(loaded.scheduler_config)
        )
    }


def _load(ctx, source: CheckpointSource):
    try:
        return load(ctx, source)[0]
    except (OSError, ValueError) as error:  # CheckpointProblem is a ValueError naming the file
        raise NodeError(f"cannot load {Path(source.path).name}: {error}") from None


def _clip_source(params: dict[str, Any], names: list[str], default: str) -> tuple[CheckpointSource, str]:
    paths = [Path(name) for name in names]
    skeleton = _skeleton(params, paths[0], default)
    parts = components.assign(paths, skeleton, checkpoints.architecture(skeleton))
    source = CheckpointSource(
        str(paths[0]), _fingerprint(paths), str(skeleton), parts=tuple((p, str(f)) for p, f in parts.items())
    )
    return source, _family(skeleton)


def _clip_problems(names: list[str], default: str):
    def validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
        try:
            _clip_source(params, [params[n] for n in names], CLIP_TYPES.get(params.get("type"), default))
        except (checkpoints.CheckpointProblem, FileProblem) as error:
            return [str(error)]
        return []

    return validate


def _clip_family(names: list[str], default: str):
    def family(params: dict[str, Any], _inputs: dict[str, str | None]) -> str | None:
        skeleton_name = CLIP_TYPES.get(params.get("type"), default)
        first = FileResolver().resolve("model:text_encoders", params[names[0]])
        return _family(_skeleton(params, first, skeleton_name))

    return family


def _clip_name(name: str, what: str) -> Param:
    return Param(
        name,
        T.STRING,
        "",
        path="model:text_encoders",
        description=f"{what} (models/text_encoders or models/clip; Hugging Face key layout, fp16 or fp8).",
    )


def _clip(ctx, params: dict[str, Any], names: list[str], default: str) -> dict[str, ClipHandle]:
    try:
        source, family = _clip_source(params, [params[n] for n in names], default)
    except checkpoints.CheckpointProblem as error:
        raise NodeError(str(error)) from None
    _load(ctx, source)
    return {"clip": ClipHandle(source, family)}


SINGLE = ["clip_name"]
DUAL = ["clip_name1", "clip_name2"]
TRIPLE = ["clip_name1", "clip_name2", "clip_name3"]


@node(
    "model.clip",
    title="Load CLIP",
    category="loaders",
    disk_cache=False,
    outputs=[Output("clip", T.CLIP, "The text encoder, for Text Encode.")],
    params=[
        _clip_name("clip_name", "One text encoder: SD1.x's CLIP-L (clip_l.safetensors) or SD2's OpenCLIP-H"),
        Param(
            "type",
            T.STRING,
            "stable_diffusion",
            choices=tuple(SINGLE_CLIP_TYPES),
            description="stable_diffusion: SD1.x's CLIP-L; sd2: SD2's OpenCLIP ViT-H (ComfyUI's CLIPLoader types "
            "for models with one text encoder).",
        ),
        CONFIG,
    ],
    family=lambda params, inputs: _clip_family(SINGLE, SINGLE_CLIP_TYPES.get(params.get("type"), "sd15"))(
        params, inputs
    ),
    validate=lambda params, inputs: _clip_problems(SINGLE, SINGLE_CLIP_TYPES.get(params.get("type"), "sd15"))(
        params, inputs
    ),
    measure=lambda params, _inputs: _measure.weights(*(params[name] for name in SINGLE)),
)
def load_clip(ctx, clip_name, type, config):  # noqa: A002 (ComfyUI's param name)
    """Loads one text encoder file (ComfyUI: CLIPLoader) for a model that has one, against that model
    kind's skeleton (or `config`); Text Encode then works as with a checkpoint's own CLIP."""
    return _clip(ctx, locals(), SINGLE, SINGLE_CLIP_TYPES[type])


@node(
    "model.dual_clip",
    title="Dual CLIP",
    category="loaders",
    disk_cache=False,
    outputs=[Output("clip", T.CLIP, "The text encoders, for Text Encode.")],
    params=[
        _clip_name("clip_name1", "One text encoder: clip_l.safetensors for Flux, clip_l or clip_g for SD3"),
        _clip_name(
            "clip_name2", "The other: t5xxl_fp16.safetensors (or fp8) for Flux, clip_g or clip_l for SD3"
        ),
        Param(
            "type",
            T.STRING,
            "flux",
            choices=tuple(CLIP_TYPES),
            description="flux: CLIP-L + T5-XXL; sd3: CLIP-L + CLIP-G (T5 left out: zeros, as diffusers does).",
        ),
        CONFIG,
    ],
    family=_clip_family(DUAL, "flux-dev"),
    validate=_clip_problems(DUAL, "flux-dev"),
    measure=lambda params, _inputs: _measure.weights(*(params[name] for name in DUAL)),
)
def dual_clip(ctx, clip_name1, clip_name2, type, config):  # noqa: A002 (ComfyUI's param name)
    """Loads two text encoder files (ComfyUI: DualCLIPLoader), in either order: which is which is read from
    the files (T5 or CLIP, and the CLIP's width)."""
    return _clip(ctx, locals(), DUAL, CLIP_TYPES[type])


@node(
    "model.triple_clip",
    title="Triple CLIP",
    category="loaders",
    disk_cache=False,
    outputs=[Output("clip", T.CLIP, "The text encoders, for Text Encode.")],
    params=[
        _clip_name("clip_name1", "clip_l.safetensors"),
        _clip_name("clip_name2", "clip_g.safetensors"),
        _clip_name("clip_name3", "t5xxl_fp16.safetensors (or fp8)"),
        CONFIG,
    ],
    family=_clip_family(TRIPLE, "sd3-medium"),
    validate=_clip_problems(TRIPLE, "sd3-medium"),
    measure=lambda params, _inputs: _measure.weights(*(params[name] for name in TRIPLE)),
)
def triple_clip(ctx, clip_name1, clip_name2, clip_name3, config):
    """Loads SD3's three text encoders from their files (ComfyUI: TripleCLIPLoader), in any order."""
    return _clip(ctx, locals(), TRIPLE, "sd3-medium")
