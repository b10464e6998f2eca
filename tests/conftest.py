"""Shared fixtures: a test registry of counting nodes, offline Hugging Face, offscreen Qt."""

from __future__ import annotations

import os
from collections import Counter

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.engine.context import NodeError  # noqa: E402
from app.graph import types as T  # noqa: E402
from app.graph.model import Edge, Graph, Node  # noqa: E402
from app.graph.spec import Input, Output, Param, node  # noqa: E402
from app.registry import Registry  # noqa: E402


class Counting:
    """Nodes that count how often they ran, for incremental-execution tests."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.hooks: dict[str, object] = {}
        runs, hooks = self.runs, self.hooks

        @node(
            "test.source",
            title="Source",
            category="test",
            outputs=[Output("value", T.FLOAT)],
            params=[Param("value", T.FLOAT, 1.0)],
        )
        def source(ctx, value):
            runs[ctx.node_id] += 1
            return {"value": value}

        @node(
            "test.add",
            title="Add",
            category="test",
            inputs=[Input("a", T.FLOAT), Input("b", T.FLOAT, optional=True)],
            outputs=[Output("value", T.FLOAT)],
            params=[Param("offset", T.FLOAT, 0.0)],
        )
        def add(ctx, a, b, offset):
            runs[ctx.node_id] += 1
            hook = hooks.get(ctx.node_id)
            if callable(hook):
                hook(ctx)
            return {"value": a + (b or 0.0) + offset}

        @node(
            "test.fail",
            title="Fail",
            category="test",
            inputs=[Input("a", T.FLOAT)],
            outputs=[Output("value", T.FLOAT)],
            params=[Param("fail", T.BOOL, True)],
        )
        def fail(ctx, a, fail):
            runs[ctx.node_id] += 1
            if fail:
                raise NodeError("asked to fail")
            return {"value": a}

        @node("test.sink", title="Sink", category="test", output=True, inputs=[Input("value", T.FLOAT)])
        def sink(ctx, value):
            runs[ctx.node_id] += 1
            ctx.emit("output", value=value)
            return {}

        @node("test.clock", title="Clock", category="test", volatile=True, outputs=[Output("value", T.FLOAT)])
        def clock(ctx):
            runs[ctx.node_id] += 1
            return {"value": float(runs[ctx.node_id])}

        @node(
            "test.model",
            title="Model",
            category="test",
            outputs=[Output("model", T.MODEL)],
            params=[Param("family", T.STRING, "sd15")],
            family=lambda params, _: params["family"],
        )
        def model(ctx, family):
            runs[ctx.node_id] += 1
            return {"model": object()}

        @node(
            "test.use",
            title="Use",
            category="test",
            outputs=[Output("value", T.FLOAT)],
            inputs=[Input("model", T.MODEL), Input("control", T.MODEL, optional=True)],
        )
        def use(ctx, model, control):
            runs[ctx.node_id] += 1
            return {"value": 1.0}

        self.registry = Registry([f.spec for f in (source, add, fail, sink, clock, model, use)])


@pytest.fixture
def counting() -> Counting:
    return Counting()


def chain(length: int, registry_prefix: str = "test") -> Graph:
    """source -> add_1 -> ... -> add_n -> sink."""
    graph = Graph()
    graph.add_node(Node("src", f"{registry_prefix}.source", params={"value": 1.0}))
    previous = "src"
    for index in range(1, length + 1):
        graph.add_node(Node(f"add_{index}", f"{registry_prefix}.add"))
        graph.connect(Edge(previous, "value", f"add_{index}", "a"))
        previous = f"add_{index}"
    graph.add_node(Node("sink", f"{registry_prefix}.sink"))
    graph.connect(Edge(previous, "value", "sink", "value"))
    return graph
