"""Pictures follow keys: a node's thumbnail and the Preview dock always show the picture of the key the node
has now — the run's own, one kept from an earlier run after undo or a value typed back, one read from the
disk cache — and none when its settings have no picture yet; nothing survives from another graph."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtGui import QGuiApplication, QImage

from app.graph.commands import SetParam
from app.graph.model import Edge, Graph, Node
from app.ui import run_state
from tests.ui.run_nodes import WORKER_REGISTRY
from tests.ui.run_nodes import registry as run_registry

RUN_LIMIT_MS = 60_000


def _graph() -> Graph:
    graph = Graph()
    graph.add_node(Node("shape", "shapes.draw", params={"width": 48, "height": 48}))
    graph.add_node(Node("dark", "t.darken", params={"steps": 2, "amount": 0.5}))
    graph.add_node(Node("show", "image.preview"))
    graph.connect(Edge("shape", "image", "dark", "image"))
    graph.connect(Edge("dark", "image", "show", "image"))
    for index, node_id in enumerate(graph.nodes):
        graph.set_layout_item("positions", node_id, [index * 300, 0])
    return graph


def _window(qtbot, tmp_path, graph=None):
    from app.ui.window import MainWindow

    win = MainWindow(run_registry(), graph or _graph(), worker_registry=WORKER_REGISTRY)
    win.runner.output_dir = tmp_path / "out"
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    qtbot.waitExposed(win)
    return win


def _run(qtbot, win) -> dict:
    with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS) as done:
        win.runner.run()
    assert done.args[0]["status"] == "ok"
    return done.args[0]


def _thumb(win, node_id):
    return win.editor.scene.nodes[node_id].run_view.thumb


def _expected_thumb(win, picture):
    return run_state.thumbnail(run_state.to_qimage(picture), win.editor.scene.nodes["dark"].geometry.width)


def test_undo_and_typed_back_values_show_their_own_pictures_and_new_values_none(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        _run(qtbot, win)
        first = win.runner.pictures["dark"][0].copy()
        win.editor.push(SetParam("dark", "amount", 0.9))
        win.runner.refresh()
        assert _thumb(win, "dark") is None and "dark" not in win.runner.pictures  # no picture for 0.9 yet
        assert win.run_controls.preview.image is None or win.run_controls.preview.node_id != "dark"
        _run(qtbot, win)
        second = win.runner.pictures["dark"][0].copy()
        assert not np.array_equal(first, second)
        win.editor.history.undo()  # back to 0.5: cached, and its own picture again, without running
        win.runner.refresh()
        assert win.runner.states["dark"].state == "cached"
        assert np.array_equal(win.runner.pictures["dark"][0], first)
        assert _thumb(win, "dark") == _expected_thumb(win, first)
        win.editor.push(SetParam("dark", "amount", 0.9))  # typed back: the second picture
        win.runner.refresh()
        assert np.array_equal(win.runner.pictures["dark"][0], second)
        assert win.run_controls.preview.node_id in (None, "dark", "show")
    finally:
        win.runner.close()


def test_a_fresh_editor_reads_cached_pictures_from_the_disk_cache(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        _run(qtbot, win)
        shape = win.runner.pictures["shape"][0].copy()
    finally:
        win.runner.close()
    other = _window(qtbot, tmp_path)  # same cache folder (NODELOOM_CACHE_DIR), nothing in memory
    try:
        assert other.runner.states["shape"].state == "cached"
        assert np.array_equal(other.runner.pictures["shape"][0], shape)
        assert other.runner.pictures["shape"][1].endswith("(cached)")
        assert _thumb(other, "shape") is not None
    finally:
        other.runner.close()


def test_nothing_from_the_previous_graph_survives_new(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        _run(qtbot, win)
        assert win.runner.pictures
        graph = Graph()
        graph.add_node(Node("lone", "shapes.draw", params={"width": 40, "height": 40, "shape": "square"}))
        win.editor.set_graph(graph)
        assert set(win.runner.pictures) <= {"lone"} and win.run_controls.activity_label.text() == ""
        assert all(item.run_view.thumb is None for item in win.editor.scene.nodes.values())
    finally:
        win.runner.close()


AMOUNTS = (0.2, 0.5, 0.8)
ACTION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(AMOUNTS)),
    st.tuples(st.just("undo"), st.none()),
    st.tuples(st.just("redo"), st.none()),
    st.tuples(st.just("run"), st.none()),
)


def test_pictures_follow_keys_through_random_edits_undo_redo_and_runs(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    seen: dict[float, np.ndarray] = {}  # amount -> the picture a run made for it

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(ACTION, min_size=1, max_size=6))
    def check(actions):
        for action, value in actions:
            if action == "set":
                win.editor.push(SetParam("dark", "amount", value))
            elif action == "undo" and win.editor.history.can_undo:
                win.editor.history.undo()
            elif action == "redo" and win.editor.history.can_redo:
                win.editor.history.redo()
            elif action == "run":
                _run(qtbot, win)
                seen[win.editor.graph.nodes["dark"].params["amount"]] = win.runner.pictures["dark"][0].copy()
            win.runner.refresh()
            amount = win.editor.graph.nodes["dark"].params["amount"]
            shown = win.runner.pictures.get("dark")
            if amount in seen:  # this value ran: its picture, and only its picture
                assert shown is not None and np.array_equal(shown[0], seen[amount]), (amount, actions)
                assert _thumb(win, "dark") == _expected_thumb(win, seen[amount])
            elif win.runner.states["dark"].state != "cached":  # never ran: nothing
                assert shown is None and _thumb(win, "dark") is None, (amount, actions)

    try:
        check()
    finally:
        win.runner.close()


def test_a_batch_shows_as_a_grid_and_the_dock_steps_through_it(qtbot, tmp_path):
    graph = Graph()
    graph.add_node(Node("shape", "shapes.draw", params={"width": 40, "height": 30}))
    graph.add_node(Node("many", "t.batch", params={"count": 3}))
    graph.add_node(Node("save", "image.save", params={"prefix": "b"}))
    graph.connect(Edge("shape", "image", "many", "image"))
    graph.connect(Edge("many", "image", "save", "image"))
    win = _window(qtbot, tmp_path, graph)
    try:
        _run(qtbot, win)
        frames, caption = win.runner.pictures["many"]
        assert isinstance(frames, list) and len(frames) == 3 and caption.endswith("40×30, 3 images")
        grid = run_state.grid(frames)
        assert grid.shape == (60, 80, 3) and np.array_equal(grid[:30, 40:], frames[1])  # 2 x 2, row by row
        thumb = _thumb(win, "many")
        assert abs(thumb.width() / thumb.height() - 80 / 60) < 0.05
        dock = win.run_controls.preview
        win.editor.select_nodes(["many"])
        assert dock.caption.text().startswith("image 1/3") and dock.forward.isVisibleTo(dock)
        dock.step(1)
        assert dock.caption.text().startswith("image 2/3")
        assert dock.image == run_state.to_qimage(frames[1])
        saved = dock.save_as(str(tmp_path / "picked.png"))
        assert saved and QImage(saved).size() == dock.image.size()
        actions = [a.text() for a in dock.menu().actions()]
        assert actions[:2] == ["Copy image", "Save as…"]
        win.editor.select_nodes(["save"])  # Save Image's files: Open and Show in folder
        assert {"Open", "Show in folder"} <= {a.text() for a in dock.menu().actions()}
        dock.copy()
        assert not QGuiApplication.clipboard().image().isNull()
    finally:
        win.runner.close()
