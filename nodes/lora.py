"""Load LoRA and Load LoRA (model only): a LoRA file added to MODEL and CLIP as a patch (app/runtime/lora.py).

The loaded model is never changed here: the node appends a `LoraPatch` (file + strength) to the handles'
`patches`; the Sampler and Text Encode add the weights for their use and restore them after. Chained nodes
stack their LoRAs in order. The MODEL output's cache key is made of the model, the file and
`strength_model` only (and CLIP's of clip, file and `strength_clip`), so changing one strength re-runs only
what the other output does not feed. Never import Qt here; torch only through app.runtime when reading.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from app.engine.context import NodeError
from app.files import FileProblem
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import checkpoints
from app.runtime.values import CheckpointSource, LoraPatch

STRENGTH = dict(min=-20.0, max=20.0, step=0.01)
LORA_NAME = Param(
    "lora_name",
    T.STRING,
    "",
    path="model:loras",
    description="A LoRA under models/loras (A1111: models/Lora, LyCORIS): kohya/A1111, ComfyUI or "
    "diffusers/peft format, .safetensors (or .pt, read without running code).",
)
MODEL_STRENGTH = Param(
    "strength_model",
    T.FLOAT,
    1.0,
    description="How strongly the LoRA changes the UNet: 1 = as trained, 0 = off, negative = the opposite.",
    **STRENGTH,
)


def _validate(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    path = Path(params["lora_name"])
    if path.suffix not in (".safetensors", ".pt", ".ckpt", ".bin"):
        return [f"{path.name}: a LoRA is a .safetensors (or .pt) file"]
    if path.suffix == ".safetensors":
        try:
            keys = checkpoints.safetensors_keys(path)
        except checkpoints.CheckpointProblem as error:
            return [str(error)]
        if not any("lora" in k or k.endswith(".alpha") for k in keys):
            return [f"{path.name}: no LoRA keys in it (is it a checkpoint or an embedding?)"]
    return []


def _patch(lora_name: str, strength: float) -> LoraPatch:
    path = Path(lora_name)
    try:
        fingerprint = checkpoints.weights_fingerprint(path)
    except (OSError, FileProblem) as error:
        raise NodeError(f"cannot read LoRA {path}: {error}") from None
    return LoraPatch(CheckpointSource(str(path), fingerprint), float(strength))


def _with(handle: Any, patch: LoraPatch) -> Any:
    if patch.strength == 0:
        return handle
    return dataclasses.replace(handle, patches=(*handle.patches, patch))


@node(
    "model.lora",
    title="Load LoRA",
    category="loaders",
    disk_cache=False,
    inputs=[
        Input("model", T.MODEL, "The model to add the LoRA to (from Load Checkpoint or another Load LoRA)."),
        Input("clip", T.CLIP, "Its text encoders."),
    ],
    outputs=[
        Output("model", T.MODEL, "The model with the LoRA.", uses=("model", "lora_name", "strength_model")),
        Output(
            "clip", T.CLIP, "The text encoders with the LoRA.", uses=("clip", "lora_name", "strength_clip")
        ),
    ],
    params=[
        LORA_NAME,
        MODEL_STRENGTH,
        Param(
            "strength_clip",
            T.FLOAT,
            1.0,
            description="How strongly the LoRA changes the text encoders (0 = leave them alone).",
            **STRENGTH,
        ),
    ],
    validate=_validate,
)
def load_lora(ctx, model, clip, lora_name, strength_model, strength_clip):
    """Adds a LoRA to a model and its text encoders (ComfyUI: LoraLoader), at separate strengths. The base
    model stays loaded once; a new LoRA or strength never reloads it. Chain several to stack them; keys
    the model does not have are reported as a warning (`N keys not applied`) when it runs."""
    patch = _patch(lora_name, strength_model)
    clip_patch = dataclasses.replace(patch, strength=float(strength_clip))
    return {"model": _with(model, patch), "clip": _with(clip, clip_patch)}


@node(
    "model.lora_model_only",
    title="Load LoRA (model only)",
    category="loaders",
    disk_cache=False,
    inputs=[Input("model", T.MODEL, "The model to add the LoRA to.")],
    outputs=[Output("model", T.MODEL, "The model with the LoRA.")],
    params=[LORA_NAME, MODEL_STRENGTH],
    validate=_validate,
)
def load_lora_model_only(ctx, model, lora_name, strength_model):
    """Adds a LoRA to the model's UNet only (ComfyUI: LoraLoaderModelOnly); text encoders are untouched."""
    return {"model": _with(model, _patch(lora_name, strength_model))}
