"""File format v1: byte-exact round trips, migrations, placeholders, clear errors, PNG, schema, atomic save."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from app.graph import pngmeta, serialize
from app.graph import types as T
from app.graph.model import Graph, Node
from app.graph.schema import graph_schema
from app.graph.spec import Output, Param, node
from app.images import encode_png
from app.registry import Registry, default_registry

GRAPHS = sorted(Path(__file__).resolve().parents[2].joinpath("graphs").glob("*.json"))


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_shipped_graphs_round_trip_byte_for_byte(path, tmp_path):
    graph = serialize.load(path, default_registry())
    out = serialize.save(graph, tmp_path / path.name)
    assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_shipped_graphs_match_the_published_schema(path):
    jsonschema.validate(json.loads(path.read_text()), graph_schema())


def _migrating_registry():
    def migrate(params, from_version):
        if from_version < 2:
            params["strength"] = params.pop("amount", 1.0)
        if from_version < 3:
            params["strength"] = float(params["strength"]) * 2
        return params

    @node(
        "t.scale",
        title="Scale",
        category="t",
        version=3,
        migrate=migrate,
        outputs=[Output("value", T.FLOAT)],
        params=[Param("strength", T.FLOAT, 1.0)],
    )
    def scale(ctx, strength):
        return {"value": strength}

    return Registry([scale.spec])


def test_old_node_versions_are_migrated_on_load():
    text = json.dumps(
        {"schema_version": 1, "nodes": {"s": {"type": "t.scale", "version": 1, "params": {"amount": 0.25}}}}
    )
    graph = serialize.loads(text, _migrating_registry())
    assert graph.nodes["s"].version == 3
    assert graph.nodes["s"].params == {"strength": 0.5}
    text = json.dumps(
        {"schema_version": 1, "nodes": {"s": {"type": "t.scale", "version": 2, "params": {"strength": 2.0}}}}
    )
    assert serialize.loads(text, _migrating_registry()).nodes["s"].params == {"strength": 4.0}


def test_unknown_node_types_keep_their_data(tmp_path):
    data = {
        "schema_version": 1,
        "nodes": {
            "mystery": {"type": "vendor.magic", "version": 7, "params": {"spell": ["a", 1], "power": 9000}},
            "save": {"type": "image.save", "version": 1, "params": {"prefix": "x"}},
        },
        "edges": [{"from": ["mystery", "image"], "to": ["save", "image"]}],
        "layout": {"positions": {"mystery": [1, 2]}},
    }
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    graph = serialize.load(path, default_registry())
    assert graph.nodes["mystery"].params == {"spell": ["a", 1], "power": 9000}
    assert serialize.save(graph, tmp_path / "again.json").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nodes": {}}, "schema_version"),
        ({"schema_version": 99}, "newer"),
        ({"schema_version": 1, "nodes": {"a": {"params": {}}}}, "node 'a': missing 'type'"),
        (
            {"schema_version": 1, "nodes": {"a": {"type": "x", "params": []}}},
            "node 'a': 'params' must be an object",
        ),
        ({"schema_version": 1, "nodes": {"a": {"type": "x", "mode": "asleep"}}}, "node 'a': mode"),
        (
            {
                "schema_version": 1,
                "nodes": {"a": {"type": "x"}},
                "edges": [{"from": ["a"], "to": ["a", "i"]}],
            },
            "edge 0",
        ),
        (
            {
                "schema_version": 1,
                "nodes": {"a": {"type": "x"}},
                "edges": [{"from": ["a", "o"], "to": ["b", "i"]}],
            },
            "missing node 'b'",
        ),
        ({"schema_version": 1, "nodes": {"1a": {"type": "x"}}}, "start with a letter"),
        ({"schema_version": 1, "extra": 1}, "unknown top-level keys: extra"),
    ],
)
def test_malformed_files_are_refused_with_a_clear_message(data, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(serialize.GraphFileError) as error:
        serialize.load(path)
    assert str(path) in str(error.value) and message in str(error.value)
    structural = message != "missing node 'b'"  # links to absent nodes are beyond what a schema can say
    if structural and data.get("schema_version") == 1:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, graph_schema())


def test_unreadable_files_say_so(tmp_path):
    with pytest.raises(serialize.GraphFileError, match="cannot read"):
        serialize.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"schema_version": 1,')
    with pytest.raises(serialize.GraphFileError, match="invalid JSON at line 1"):
        serialize.load(tmp_path / "broken.json")


def test_png_carries_a_graph(tmp_path):
    graph = Graph()
    graph.add_node(Node("shape", "shapes.draw", params={"colour": "green"}))
    import numpy as np

    png = pngmeta.add_text(
        encode_png(np.zeros((4, 4, 3), np.float32)), {serialize.PNG_KEY: serialize.dumps(graph), "other": "é"}
    )
    assert pngmeta.read_text(png)["other"] == "é"
    (tmp_path / "image.png").write_bytes(png)
    loaded = serialize.load(tmp_path / "image.png")
    assert serialize.dumps(loaded) == serialize.dumps(graph)
    (tmp_path / "plain.png").write_bytes(encode_png(np.zeros((4, 4, 3), np.float32)))
    with pytest.raises(serialize.GraphFileError, match="carries no Nodeloom graph"):
        serialize.load(tmp_path / "plain.png")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "graph.json"
    graph = Graph()
    graph.add_node(Node("a", "x"))
    serialize.save(graph, path)
    before = path.read_bytes()
    graph.add_node(Node("b", "x"))

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(OSError, match="disk full"):
        serialize.save(graph, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json"]


def test_saved_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    graph = Graph()
    umask = os.umask(0o022)
    try:
        path = serialize.save(graph, tmp_path / "shared.json")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o600)
        serialize.save(graph, path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an existing file keeps its mode
    finally:
        os.umask(umask)
