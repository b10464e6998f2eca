"""Nodes for worker tests, importable by the spawned worker process (`tests.engine.worker_nodes:registry`)."""

from __future__ import annotations

import time

import numpy as np

from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.registry import Registry


@node(
    "w.source",
    title="Source",
    category="test",
    outputs=[Output("value", T.FLOAT)],
    params=[Param("value", T.FLOAT, 1.0)],
)
def source(ctx, value):
    return {"value": value}


@node(
    "w.steps",
    title="Steps",
    category="test",
    inputs=[Input("value", T.FLOAT)],
    outputs=[Output("value", T.FLOAT)],
    params=[Param("steps", T.INT, 5, min=1), Param("delay", T.FLOAT, 0.0)],
)
def steps(ctx, value, steps, delay):
    """Works in steps, checking for cancel and sending a preview at each."""
    for step in range(1, steps + 1):
        ctx.check_cancelled()
        time.sleep(delay)
        ctx.progress(step, steps)
        ctx.preview(np.full((2, 2, 3), step / steps, np.float32), step=step, total=steps)
    return {"value": value + steps}


@node(
    "w.stubborn",
    title="Stubborn",
    category="test",
    inputs=[Input("value", T.FLOAT)],
    outputs=[Output("value", T.FLOAT)],
)
def stubborn(ctx, value):
    """Never looks at cancel."""
    time.sleep(120)
    return {"value": value}


@node("w.sink", title="Sink", category="test", output=True, inputs=[Input("value", T.FLOAT)])
def sink(ctx, value):
    ctx.emit("output", value=value)
    return {}


def registry() -> Registry:
    return Registry([source.spec, steps.spec, stubborn.spec, sink.spec])
