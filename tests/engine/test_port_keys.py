"""Outputs that declare what they use get their own cache keys; files named inside params join the key."""

from __future__ import annotations

from collections import Counter

import pytest

from app.engine.executor import Executor
from app.engine.plan import validate
from app.files import FileResolver
from app.graph import types as T
from app.graph.model import Edge, Graph, Node
from app.graph.spec import FileRef, Input, Output, Param, node
from app.registry import Registry


@pytest.fixture
def split():
    runs: Counter[str] = Counter()

    @node(
        "t.src",
        title="Src",
        category="t",
        outputs=[Output("value", T.FLOAT)],
        params=[Param("v", T.FLOAT, 1.0)],
    )
    def src(ctx, v):
        runs[ctx.node_id] += 1
        return {"value": v}

    @node(
        "t.split",
        title="Split",
        category="t",
        inputs=[Input("a", T.FLOAT), Input("b", T.FLOAT)],
        outputs=[
            Output("left", T.FLOAT, uses=("a", "left_scale")),
            Output("right", T.FLOAT, uses=("b", "right_scale")),
        ],
        params=[Param("left_scale", T.FLOAT, 1.0), Param("right_scale", T.FLOAT, 1.0)],
    )
    def splitter(ctx, a, b, left_scale, right_scale):
        runs[ctx.node_id] += 1
        return {"left": a * left_scale, "right": b * right_scale}

    @node("t.sink", title="Sink", category="t", output=True, inputs=[Input("value", T.FLOAT)])
    def sink(ctx, value):
        runs[ctx.node_id] += 1
        ctx.emit("output", value=value)
        return {}

    @node(
        "t.use",
        title="Use",
        category="t",
        inputs=[Input("value", T.FLOAT)],
        outputs=[Output("value", T.FLOAT)],
    )
    def use(ctx, value):
        runs[ctx.node_id] += 1
        return {"value": value + 1}

    graph = Graph()
    for node_id, kind in [
        ("a", "t.src"),
        ("b", "t.src"),
        ("split", "t.split"),
        ("lu", "t.use"),
        ("ru", "t.use"),
    ]:
        graph.add_node(Node(node_id, kind))
    graph.add_node(Node("ls", "t.sink"))
    graph.add_node(Node("rs", "t.sink"))
    for edge in [
        ("a", "value", "split", "a"),
        ("b", "value", "split", "b"),
        ("split", "left", "lu", "value"),
        ("split", "right", "ru", "value"),
        ("lu", "value", "ls", "value"),
        ("ru", "value", "rs", "value"),
    ]:
        graph.connect(Edge(*edge))
    registry = Registry([f.spec for f in (src, splitter, sink, use)])
    return graph, Executor(registry), runs


def test_a_param_one_output_does_not_use_leaves_that_branch_cached(split):
    graph, executor, runs = split
    first = executor.run(graph)
    assert first.status == "ok"
    runs.clear()
    graph.set_param("split", "right_scale", 3.0)
    events = []
    result = executor.run(graph, on_event=events.append)
    assert result.status == "ok"
    assert runs["split"] == 1 and runs["ru"] == 1  # the node itself and the branch it feeds
    assert runs["lu"] == 0 and "lu" in result.cached  # the other output's key did not change
    assert result.keys["lu"] == first.keys["lu"] and result.keys["ru"] != first.keys["ru"]


def test_an_input_one_output_does_not_use_leaves_that_branch_cached(split):
    graph, executor, runs = split
    before = executor.run(graph)
    graph.set_param("a", "v", 5.0)
    after = executor.run(graph)
    assert after.keys["lu"] != before.keys["lu"] and after.keys["ru"] == before.keys["ru"]
    assert executor.memory.get(after.keys["lu"])["value"] == 6.0


def test_outputs_may_only_use_declared_inputs_and_params():
    with pytest.raises(ValueError, match="uses unknown nope"):

        @node("t.bad", title="Bad", category="t", outputs=[Output("x", T.FLOAT, uses=("nope",))])
        def bad(ctx):
            return {"x": 1.0}


@pytest.fixture
def reader(tmp_path):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    (folder / "@style.pt").write_bytes(b"one")

    @node(
        "t.read",
        title="Read",
        category="t",
        output=True,
        params=[Param("text", T.STRING, "")],
        reads=lambda params: [
            FileRef("text", "model:embeddings", (word, word + ".pt"))
            for word in params["text"].split()
            if word.startswith("@")
        ],
    )
    def read(ctx, text):
        return {}

    graph = Graph()
    graph.add_node(Node("r", "t.read", params={"text": "a @style b"}))
    return graph, Registry([read.spec]), FileResolver(model_roots=(tmp_path,)), folder


def test_files_named_inside_params_join_the_key(reader):
    from app.engine.keys import compute_keys

    graph, registry, resolver, folder = reader
    assert validate(graph, registry, resolver) == []
    first, parts = compute_keys(graph, registry, ["r"], resolver)
    assert "text:@style" in parts["r"].files
    (folder / "@style.pt").write_bytes(b"changed content")  # size (and mtime) change: a new fingerprint
    second, _ = compute_keys(graph, registry, ["r"], resolver)
    assert first["r"] != second["r"]


def test_a_missing_named_file_is_a_problem_naming_param_and_folders(reader):
    graph, registry, resolver, folder = reader
    graph.set_param("r", "text", "@nothing")
    problems = validate(graph, registry, resolver)
    assert len(problems) == 1 and problems[0].where == "text"
    assert "'@nothing' not found" in problems[0].message and str(folder) in problems[0].message
