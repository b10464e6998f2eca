"""The scene mirrors the model: after any random edit sequence, undo and redo, there is exactly one
item per node, link, frame and reroute point, each where the layout says (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.graph import serialize
from app.graph.commands import CommandError
from app.graph.history import History
from app.ui.scene import GraphScene
from tests.graph.test_history_random import KINDS, REGISTRY, _command


def _assert_mirrors(scene: GraphScene) -> None:
    graph = scene.graph
    layout = graph.layout
    assert set(scene.nodes) == set(graph.nodes)
    assert set(scene.edges) == set(graph.edges)
    assert set(scene.frames) == set(layout.get("frames", {}))
    points = {(k, i): p for k, pts in layout.get("reroutes", {}).items() for i, p in enumerate(pts)}
    assert set(scene.reroutes) == set(points)
    assert len(scene.items()) == len(graph.nodes) + len(graph.edges) + len(scene.frames) + len(points)
    for node_id, item in scene.nodes.items():
        x, y = layout.get("positions", {}).get(node_id, (0, 0))
        assert (item.pos().x(), item.pos().y()) == (x, y)
        sockets = layout.get("sockets", {}).get(node_id, [])
        assert all(name in item.geometry.inputs for name in sockets)
    for frame_id, item in scene.frames.items():
        assert [item.pos().x(), item.pos().y()] == layout["frames"][frame_id]["rect"][:2]
    for address, item in scene.reroutes.items():
        assert [item.pos().x(), item.pos().y()] == list(points[address])
    for edge, item in scene.edges.items():
        start = scene.nodes[edge.src].port_pos(edge.src_port, True)
        assert item.path.pointAtPercent(0) == start


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), steps=st.integers(1, 20))
def test_scene_items_mirror_the_graph_through_edits_undo_and_redo(qapp, data, steps):
    graph = serialize.load("graphs/shapes.json", REGISTRY)
    history = History(graph, REGISTRY)
    scene = GraphScene(graph, REGISTRY)
    for _ in range(steps):
        command = _command(data, graph, data.draw(st.sampled_from(KINDS)))
        if command is None:
            continue
        try:
            history.push(command)
        except CommandError:
            pass
        _assert_mirrors(scene)
    for _ in range(data.draw(st.integers(0, len(history)))):
        history.undo()
        _assert_mirrors(scene)
    while history.redo():
        _assert_mirrors(scene)
    scene.detach()
