"""Random edit sequences: undoing every step restores each earlier serialized graph exactly, and redo
replays them exactly (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.graph import serialize
from app.graph.clipboard import copy_nodes
from app.graph.commands import (
    AddLinked,
    AddNode,
    CommandError,
    Connect,
    ConvertParam,
    Disconnect,
    Paste,
    Remove,
    SetMode,
    SetParam,
    SetTitle,
)
from app.graph.history import History
from app.graph.layout_commands import AddFrame, AddReroute, Move, SetLayout
from app.graph.model import Edge
from tests.graph.conftest import light_registry

REGISTRY = light_registry()
TYPES = ["shapes.draw", "image.save", "math.binary", "value.float", "value.int", "value.string"]
KINDS = [
    "add", "remove", "connect", "disconnect", "param", "mode", "title", "move", "frame",
    "reroute", "colour", "convert", "paste", "remove_frame", "add_linked",
]  # fmt: skip


def _command(data: st.DataObject, graph, kind: str):
    ids = list(graph.nodes)
    pick = lambda options: data.draw(st.sampled_from(options))  # noqa: E731
    coord = st.integers(-500, 500)
    if kind == "add" or not ids:
        return AddNode(pick(TYPES), (data.draw(coord), data.draw(coord)))
    node_id = pick(ids)
    spec = REGISTRY(graph.nodes[node_id].type)
    if kind == "remove":
        return Remove(nodes=data.draw(st.lists(st.sampled_from(ids), max_size=2)))
    if kind == "add_linked":  # a link dropped on empty canvas, then a node chosen in the search
        ports = [p.name for p in spec.outputs] or [p.name for p in spec.inputs]
        if not ports:
            return None
        link = (node_id, pick(ports), bool(spec.outputs), "")
        return AddLinked(pick(TYPES), (data.draw(coord), data.draw(coord)), link)
    if kind == "connect":
        dst = pick(ids)
        dst_spec = REGISTRY(graph.nodes[dst].type)
        ports = [p.name for p in dst_spec.inputs] + [p.name for p in dst_spec.params if p.linkable]
        if not spec.outputs or not ports:
            return None
        return Connect(Edge(node_id, pick([p.name for p in spec.outputs]), dst, pick(ports)))
    if kind == "disconnect":
        return Disconnect([pick(graph.edges)]) if graph.edges else None
    if kind == "param":
        numeric = [p for p in spec.params if p.type in ("FLOAT", "INT") and p.min is None]
        if not numeric:
            return SetTitle(node_id, data.draw(st.text(max_size=4)))
        param = pick(numeric)
        value = data.draw(st.integers(-9, 9))
        return SetParam(node_id, param.name, value, gesture=data.draw(st.sampled_from([None, "g1", "g2"])))
    if kind == "mode":
        return SetMode([node_id], pick(["normal", "bypass", "mute"]))
    if kind == "title":
        return SetTitle(node_id, data.draw(st.text(max_size=4)))
    if kind == "move":
        return Move(nodes={node_id: (data.draw(coord), data.draw(coord))}, gesture=pick([None, "drag"]))
    if kind == "frame":
        return AddFrame((data.draw(coord), data.draw(coord), 200, 100))
    if kind == "remove_frame":
        frames = list(graph.layout.get("frames", {}))
        return Remove(frames=[pick(frames)]) if frames else None
    if kind == "reroute":
        if not graph.edges:
            return None
        return AddReroute(pick(graph.edges), (data.draw(coord), data.draw(coord)), 0)
    if kind == "colour":
        return SetLayout("Colour", "colours", node_id, pick(["#ff0000", "#00ff00", None]))
    if kind == "convert":
        linkable = [p.name for p in spec.params if p.linkable]
        return ConvertParam(node_id, pick(linkable), data.draw(st.booleans())) if linkable else None
    return Paste(copy_nodes(graph, data.draw(st.lists(st.sampled_from(ids), max_size=3))), (0, 0))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=st.integers(1, 25))
def test_undo_and_redo_restore_every_serialized_state(data, steps):
    history = History(serialize.load("graphs/shapes.json", REGISTRY), REGISTRY)
    states = [serialize.dumps(history.graph)]
    for _ in range(steps):
        command = _command(data, history.graph, data.draw(st.sampled_from(KINDS)))
        if command is None:
            continue
        before = serialize.dumps(history.graph)
        try:
            history.push(command)
        except CommandError:
            assert serialize.dumps(history.graph) == before, "a refused edit must leave no trace"
            continue
        del states[len(history) :]
        states.append(serialize.dumps(history.graph))
        assert len(states) == len(history) + 1
        serialize.loads(states[-1], REGISTRY)  # every state is a valid graph file
    final = states[-1]
    while history.undo():
        assert serialize.dumps(history.graph) == states[len(history)]
    assert serialize.dumps(history.graph) == states[0]
    while history.redo():
        assert serialize.dumps(history.graph) == states[len(history)]
    assert serialize.dumps(history.graph) == final
