"""Upscale models: Load Upscale Model (models/upscale_models: ESRGAN-family RRDBNets, Real-ESRGAN compact, SwinIR) and
Upscale Image (using Model), tiled with seams blended, as ComfyUI's UpscaleModelLoader and
ImageUpscaleWithModel. The architectures live in app/runtime/upscalers. No torch import at module level."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import checkpoints
from app.runtime import device as devices
from app.runtime.models import manager
from app.runtime.upscalers import UpscaleModelHandle, UpscalerProblem, read
from app.runtime.upscalers.tiles import run_tiled
from app.runtime.values import CheckpointSource


def _reader(source: CheckpointSource, dtype):
    module, architecture, scale = read(Path(source.path))
    module.upscale_architecture, module.upscale_scale = architecture, scale
    return module.to(dtype)


def _module(ctx, source: CheckpointSource):
    """The model on this run's device, read once per process."""
    device = devices.torch_device(ctx.device)
    try:
        return manager().load_module("upscaler", source, device, _reader), device
    except UpscalerProblem as error:
        raise NodeError(str(error)) from None


@node(
    "model.upscale",
    title="Load Upscale Model",
    category="loaders",
    disk_cache=False,
    outputs=[Output("upscale_model", T.UPSCALE_MODEL, "The upscale model, for Upscale Image (using Model).")],
    params=[
        Param(
            "model_name",
            T.STRING,
            "",
            path="model:upscale_models",
            description="An ESRGAN / BSRGAN / Real-ESRGAN (RRDBNet, or the compact SRVGGNet) or SwinIR file, "
            ".safetensors or .pth, under models/upscale_models (or ESRGAN, RealESRGAN).",
        )
    ],
)
def load_upscale_model(ctx, model_name):
    """Reads the file once per process (never runs code from it), recognises the architecture by its tensor
    names and takes its sizes and scale from their shapes."""
    path = Path(model_name)
    source = CheckpointSource(str(path), checkpoints.weights_fingerprint(path))
    module, _ = _module(ctx, source)
    return {"upscale_model": UpscaleModelHandle(source, module.upscale_architecture, module.upscale_scale)}


@node(
    "image.upscale_with_model",
    title="Upscale Image (using Model)",
    category="image",
    inputs=[
        Input("upscale_model", T.UPSCALE_MODEL, "From Load Upscale Model."),
        Input("image", T.IMAGE, "RGB images, 0..1."),
    ],
    outputs=[Output("image", T.IMAGE, "The images, the model's scale times larger (4x for most).")],
    params=[
        Param(
            "tile",
            T.INT,
            512,
            min=0,
            max=4096,
            step=32,
            description="Run in tiles of this many input pixels (less memory); 0 = the whole picture at once.",
        ),
        Param(
            "overlap",
            T.INT,
            32,
            min=0,
            max=512,
            step=8,
            description="Context around each tile in input pixels; its inner half blends with the neighbour, "
            "so seams vanish.",
        ),
    ],
)
def upscale_with_model(ctx, upscale_model, image, tile, overlap):
    """Runs the upscale model over each picture in tiles (progress per tile) and clamps to 0..1."""
    import torch

    module, device = _module(ctx, upscale_model.source)
    dtype = next(module.parameters()).dtype
    pictures = torch.from_numpy(np.ascontiguousarray(image)).movedim(-1, 1).to(device, dtype)
    outs = []
    with torch.inference_mode():
        for b in range(pictures.shape[0]):
            ctx.check_cancelled()
            out = run_tiled(module, pictures[b : b + 1], upscale_model.scale, tile, overlap, ctx.progress)
            outs.append(out.float().clamp(0, 1).movedim(1, -1).cpu())
    return {"image": np.ascontiguousarray(torch.cat(outs).numpy(), dtype=np.float32)}
