"""Torch-free nodes for live-run editor tests, importable by the spawned worker
(`tests.ui.run_nodes:registry`): the light node families plus a slow stepping image filter and a node
that fails on request."""

from __future__ import annotations

import time

import numpy as np

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.registry import Registry
from tests.graph.conftest import light_registry

WORKER_REGISTRY = "tests.ui.run_nodes:registry"


@node(
    "t.darken",
    title="Darken",
    category="test",
    inputs=[Input("image", T.IMAGE, "Pictures.")],
    outputs=[Output("image", T.IMAGE, "Darker pictures.")],
    params=[
        Param("amount", T.FLOAT, 0.5, min=0.0, max=1.0),
        Param("steps", T.INT, 4, min=1),
        Param("delay", T.FLOAT, 0.0),
        Param("note", T.STRING, ""),
    ],
)
def darken(ctx, image, amount, steps, delay, note):
    """Darkens in `steps` steps, sleeping `delay` s per step; progress, preview and a cancel check each step."""
    out = image.copy()
    for step in range(1, steps + 1):
        ctx.check_cancelled()
        time.sleep(delay)
        out = image * (1.0 - amount * step / steps)
        ctx.progress(step, steps)
        ctx.preview(out[0], step=step, total=steps)
    return {"image": out.astype(np.float32)}


@node(
    "t.fail",
    title="Fail",
    category="test",
    inputs=[Input("image", T.IMAGE, "Pictures.")],
    outputs=[Output("image", T.IMAGE, "The same pictures.")],
    params=[Param("fail", T.BOOL, True)],
)
def fail(ctx, image, fail):
    """Passes pictures on, or fails with a user-facing error."""
    if fail:
        raise NodeError("asked to fail")
    return {"image": image}


@node(
    "t.stubborn",
    title="Stubborn",
    category="test",
    inputs=[Input("image", T.IMAGE, "Pictures.")],
    outputs=[Output("image", T.IMAGE, "The same pictures, much later.")],
)
def stubborn(ctx, image):
    """Never looks at cancel."""
    time.sleep(120)
    return {"image": image}


@node(
    "t.batch",
    title="Batch",
    category="test",
    inputs=[Input("image", T.IMAGE, "Pictures.")],
    outputs=[Output("image", T.IMAGE, "`count` copies, each darker than the one before.")],
    params=[Param("count", T.INT, 3, min=1)],
)
def batch(ctx, image, count):
    """A batch of `count` pictures made from the first one."""
    return {"image": np.stack([image[0] * (1 - i / count) for i in range(count)]).astype(np.float32)}


def registry() -> Registry:
    found = light_registry()
    for spec in (darken.spec, fail.spec, stubborn.spec, batch.spec):
        found.add(spec)
    return found
