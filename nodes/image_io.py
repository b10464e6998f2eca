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
from app.fsutil import atomic_write_text, write_numbered
from app.graph import pngmeta
from app.graph import types as T
from app.graph.serialize import PNG_KEY
from app.graph.spec import Input, Output, Param, node
from app.runtime.provenance import provenance
from nodes import _measure


def _image_size(path: str) -> tuple[int, int]:
    """Width and height from the file's header (PIL reads no pixels for this)."""
    from PIL import Image

    with Image.open(path) as picture:
        return picture.size


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
            "examples/shape.png",
            path="image",
            description="Image file (PNG, JPEG, WebP, ...): absolute, or relative to the graph's folder, the "
            "working folder or the shipped assets (examples/shape.png).",
        )
    ],
    measure=lambda params, _inputs: _measure.pixels(*_image_size(params["path"])),
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


SAVED_INDEX = (
    ".nodeloom-saved.json"  # in each folder Save Image writes: which inputs it saved, as which files
)


def _folder_problem(folder: str) -> str | None:
    """Why `folder` cannot be Save Image's folder: it must stay inside the run's output folder."""
    if not folder:
        return None
    parts = Path(folder).parts
    if Path(folder).is_absolute() or ".." in parts or "\\" in folder:
        return f"folder {folder!r} must be a folder inside the output folder (no absolute path, no '..')"
    return None


def _save_problems(params: dict, _inputs: dict) -> list[str]:
    return [p for p in (images.prefix_problem(params["prefix"]), _folder_problem(params["folder"])) if p]


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
            description="File name prefix; files are numbered <prefix>_00001.png, ... in the folder.",
        ),
        Param(
            "folder",
            T.STRING,
            "",
            description="A folder inside the output folder to write into ('' = the output folder itself: the "
            "CLI's -o, default ./output; the editor's Output folder setting, default ./output).",
        ),
    ],
    validate=_save_problems,
)
def save_image(ctx, image, prefix, folder):
    """Writes PNG files (ComfyUI: SaveImage). Each carries the graph and a manifest, so dropping it on the
    editor or `nodeloom run image.png` reproduces it. The same pictures (the same cache key upstream) are
    written once per folder and prefix: running an unchanged graph again names the files it wrote before
    instead of writing byte-identical copies. Runs that save nothing (the editor's Live edits) write no
    file; the editor still shows the pictures."""
    if not isinstance(image, np.ndarray) or image.ndim != 4:
        raise NodeError(f"expected an IMAGE batch (B, H, W, 3), got {getattr(image, 'shape', type(image))}")
    problem = images.prefix_problem(prefix) or _folder_problem(folder)
    if problem:
        raise NodeError(problem)
    if not ctx.settings.save_outputs:  # the editor shows the pictures it gets from the node upstream
        return {}
    target = Path(ctx.output_dir) / folder
    identity = f"{ctx.input_keys.get('image', '')}|{prefix}"
    earlier = _saved(target).get(identity, [])
    if ctx.input_keys.get("image") and earlier and all((target / name).is_file() for name in earlier):
        for name in earlier:
            ctx.emit(EventKind.OUTPUT, path=str(target / name), unchanged=True)
        return {}
    texts = {"nodeloom_manifest": json.dumps(manifest(ctx), sort_keys=True)}
    if ctx.settings.graph_json:
        texts[PNG_KEY] = ctx.settings.graph_json
    written = []
    for frame in image:
        try:
            path = write_numbered(target, prefix, ".png", pngmeta.add_text(images.encode_png(frame), texts))
        except OSError as error:
            raise NodeError(f"cannot write into {target}: {error.strerror or error}") from None
        written.append(path.name)
        ctx.emit(EventKind.OUTPUT, path=str(path))
    if ctx.input_keys.get("image"):
        _remember(target, identity, written)
    return {}


def _saved(folder: Path) -> dict[str, list[str]]:
    """The folder's record of saved inputs (empty when missing or unreadable: then files are written)."""
    try:
        data = json.loads((folder / SAVED_INDEX).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(folder: Path, identity: str, names: list[str]) -> None:
    record = _saved(folder)
    record[identity] = names
    if len(record) > 10_000:  # keep the newest entries (dicts keep insertion order)
        record = dict(list(record.items())[-10_000:])
    try:
        atomic_write_text(folder / SAVED_INDEX, json.dumps(record))
    except OSError:
        pass  # the files are written; only the de-duplication of a later run is lost


@node(
    "image.preview",
    title="Preview Image",
    category="image",
    output=True,
    inputs=[Input("image", T.IMAGE, "The images to show.")],
)
def preview_image(ctx, image):
    """Shows images in the editor (its thumbnail and the Preview dock; a batch as a grid, with arrows in
    the dock) without writing files. The editor gets the pictures from the node that made them."""
    if not isinstance(image, np.ndarray) or image.ndim != 4:
        raise NodeError(f"expected an IMAGE batch (B, H, W, 3), got {getattr(image, 'shape', type(image))}")
    return {}
