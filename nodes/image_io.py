"""Image files: Load Image, Save Image (PNG carrying the graph that made it), Preview Image."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import app
from app import images
from app.engine.context import NodeError
from app.engine.events import EventKind
from app.fsutil import write_numbered
from app.graph import pngmeta
from app.graph import types as T
from app.graph.serialize import PNG_KEY
from app.graph.spec import Input, Output, Param, node
from app.runtime.provenance import provenance


@node(
    "image.load",
    title="Load Image",
    category="image",
    outputs=[
        Output("image", T.IMAGE, "RGB, 0..1."),
        Output("mask", T.MASK, "Alpha channel (1 where opaque)."),
    ],
    params=[
        Param(
            "path",
            T.STRING,
            "assets/examples/shape.png",
            path="image",
            description="Image file (PNG, JPEG, WebP, ...): absolute, or relative to the working folder or the graph's folder.",
        )
    ],
)
def load_image(ctx, path):
    """Reads an image file. Its size and modification time join the cache key, so editing the file re-runs."""
    try:
        image, mask = images.read(path)
    except images.ImageFileError as error:
        raise NodeError(str(error)) from None
    return {"image": image, "mask": mask}


def manifest(ctx, extra: dict | None = None) -> dict:
    """What a saved image records about how it was made: app and library versions, the seeds and model
    files (with sha256) of the graph that ran, and the device and dtype it ran on."""
    data = {
        "app": "nodeloom",
        "app_version": app.__version__,
        "node": ctx.node_id,
        "python": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **provenance(ctx),
    }
    data.update(extra or {})
    return data


@node(
    "image.save",
    title="Save Image",
    category="image",
    output=True,
    inputs=[Input("image", T.IMAGE, "The images to save (one file per batch item).")],
    params=[
        Param(
            "prefix",
            T.STRING,
            "nodeloom",
            description="File name prefix; files are numbered <prefix>_00001.png, ... in the output folder.",
        )
    ],
    validate=lambda params, _inputs: [p] if (p := images.prefix_problem(params["prefix"])) else [],
)
def save_image(ctx, image, prefix):
    """Writes PNG files into the output folder (the CLI's -o). Each carries the graph and a manifest, so
    dropping it on the editor or `nodeloom run image.png` reproduces it."""
    if not isinstance(image, np.ndarray) or image.ndim != 4:
        raise NodeError(f"expected an IMAGE batch (B, H, W, 3), got {getattr(image, 'shape', type(image))}")
    folder = Path(ctx.output_dir)
    texts = {"nodeloom_manifest": json.dumps(manifest(ctx), sort_keys=True)}
    if ctx.settings.graph_json:
        texts[PNG_KEY] = ctx.settings.graph_json
    problem = images.prefix_problem(prefix)
    if problem:
        raise NodeError(problem)
    for frame in image:
        try:
            path = write_numbered(folder, prefix, ".png", pngmeta.add_text(images.encode_png(frame), texts))
        except OSError as error:
            raise NodeError(f"cannot write into {folder}: {error.strerror or error}") from None
        ctx.emit(EventKind.OUTPUT, path=str(path))
    return {}


@node(
    "image.preview",
    title="Preview Image",
    category="image",
    output=True,
    inputs=[Input("image", T.IMAGE, "The images to show.")],
)
def preview_image(ctx, image):
    """Shows images in the editor's preview without writing files."""
    for index, frame in enumerate(image):
        ctx.preview(frame, step=index + 1, total=len(image))
    return {}
