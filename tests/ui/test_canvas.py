"""The canvas driven with the mouse and keyboard: connecting, refusing, searching, knife, frames."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt

from app.graph.commands import AddNode, Remove
from app.graph.model import Edge
from tests.ui.conftest import drag, port, vp


def _unlinked(window):
    window.editor.push(Remove(edges=list(window.editor.graph.edges)))
    window.editor.history.clear()
    return window.editor.graph


def test_dragging_from_an_output_to_an_input_connects(qtbot, window):
    graph = _unlinked(window)
    view = window.view
    drag(qtbot, view, port(view, "shape", "image", True), port(view, "save", "image", False))
    assert graph.edges == [Edge("shape", "image", "save", "image")]
    assert set(view.graph_scene.edges) == {Edge("shape", "image", "save", "image")}
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert graph.edges == [] and view.graph_scene.edges == {}


def test_dragging_from_an_input_to_an_output_connects_too(qtbot, window):
    graph = _unlinked(window)
    view = window.view
    drag(qtbot, view, port(view, "save", "image", False), port(view, "shape", "image", True))
    assert graph.edges == [Edge("shape", "image", "save", "image")]


def test_an_incompatible_drop_is_refused_with_the_reason_and_leaves_no_edge(qtbot, window):
    editor = window.editor
    add = AddNode("value.float", (0, 320))
    editor.push(add)
    view = window.view
    messages = []
    editor.message.connect(messages.append)
    drag(qtbot, view, port(view, add.node_id, "value", True), port(view, "save", "image", False))
    assert editor.graph.edges == [Edge("shape", "image", "save", "image")]
    assert len(view.graph_scene.edges) == 1
    assert messages and "type mismatch" in messages[-1] and "IMAGE" in messages[-1]
    assert "type mismatch" in window.statusBar().currentMessage()


def test_ports_light_up_while_dragging(qtbot, window):
    editor = window.editor
    number, other = AddNode("value.float", (0, 320)), AddNode("shapes.draw", (0, 500))
    editor.push(number)
    editor.push(other)
    scene, view = window.view.graph_scene, window.view
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=port(view, other.node_id, "image", True))
    qtbot.mouseMove(view.viewport(), vp(view, 300, 450))
    assert scene.port_accepts("save", "image", False), "a taken input accepts (the link is replaced)"
    assert not scene.port_accepts(number.node_id, "value", True), "an output never takes an output"
    assert not scene.port_accepts("shape", "image", True)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=vp(view, 300, 450))
    assert editor.search.isVisible()
    qtbot.keyClick(editor.search.edit, Qt.Key.Key_Escape)
    assert scene.link_drag is None and not editor.search.isVisible()
    assert len(editor.graph.nodes) == 4


def test_dropping_on_a_taken_input_replaces_the_link(qtbot, window):
    editor = window.editor
    add = AddNode("shapes.draw", (0, 400))
    editor.push(add)
    view = window.view
    drag(qtbot, view, port(view, add.node_id, "image", True), port(view, "save", "image", False))
    assert editor.graph.edges == [Edge(add.node_id, "image", "save", "image")]


def test_a_link_dropped_on_empty_canvas_opens_a_filtered_search_that_adds_and_connects(qtbot, window):
    editor, view = window.editor, window.view
    drag(qtbot, view, port(view, "shape", "image", True), vp(view, 520, 330))
    search = editor.search
    assert search.isVisible() and search.edit.text().strip() == "in:IMAGE"
    titles = [search.list.item(i).text() for i in range(search.list.count())]
    assert titles and all("Math" not in t for t in titles), "only nodes that take an IMAGE are offered"
    qtbot.keyClicks(search.edit, "preview")
    qtbot.keyClick(search.edit, Qt.Key.Key_Return)
    added = [n for n in editor.graph if n.type == "image.preview"]
    assert len(added) == 1 and not search.isVisible()
    assert Edge("shape", "image", added[0].id, "image") in editor.graph.edges
    assert editor.graph.layout["positions"][added[0].id] == [520.0, 330.0]
    assert len(editor.history) == 1, "add and connect are one undo step"


def test_tab_opens_search_and_enter_adds_the_node_at_the_cursor(qtbot, window):
    editor, view = window.editor, window.view
    target = vp(view, 100, 500)
    view.cursor().setPos(view.viewport().mapToGlobal(target))
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    assert editor.search.isVisible()
    qtbot.keyClicks(editor.search.edit, "math")
    qtbot.keyClick(editor.search.edit, Qt.Key.Key_Return)
    added = [n for n in editor.graph if n.type == "math.binary"]
    assert len(added) == 1
    assert added[0].id in view.graph_scene.nodes
    assert editor.selected_nodes() == [added[0].id]
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert all(n.type != "math.binary" for n in editor.graph)


def test_knife_cuts_the_links_it_crosses(qtbot, window):
    view = window.view
    a, b = port(view, "shape", "image", True), port(view, "save", "image", False)
    middle = (a + b) / 2
    drag(
        qtbot,
        view,
        middle + QPoint(0, -40),
        middle + QPoint(0, 40),
        Qt.MouseButton.RightButton,
        Qt.KeyboardModifier.ControlModifier,
    )
    assert window.editor.graph.edges == [] and view.graph_scene.edges == {}
    assert window.editor.history.undo_label == "Cut links"


def test_selected_nodes_move_by_drag_as_one_undo_step(qtbot, window):
    editor, view = window.editor, window.view
    start = vp(view, 100, 10)
    drag(qtbot, view, start, start + QPoint(50, 30), steps=5)
    assert editor.graph.layout["positions"]["shape"] == [50.0, 30.0]
    assert view.graph_scene.nodes["shape"].pos().x() == 50.0
    assert len(editor.history) == 1
    editor.history.undo()
    assert editor.graph.layout["positions"]["shape"] == [0, 0]


def test_a_frame_moves_its_contents(qtbot, window):
    editor, view = window.editor, window.view
    editor.select_all()
    qtbot.keyClick(view, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    frame_id, frame = next(iter(editor.graph.layout["frames"].items()))
    x, y, w, h = frame["rect"]
    view.graph_scene.clearSelection()
    grab = vp(view, x + 15, y + 15)
    drag(qtbot, view, grab, grab + QPoint(100, 60), steps=4)
    positions = editor.graph.layout["positions"]
    assert positions["shape"] == [100.0, 60.0] and positions["save"] == [420.0, 60.0]
    assert editor.graph.layout["frames"][frame_id]["rect"][:2] == [x + 100, y + 60]
    editor.history.undo()
    assert editor.graph.layout["positions"]["shape"] == [0, 0]


def test_reroute_point_added_by_double_click_bends_the_link(qtbot, window):
    editor, view = window.editor, window.view
    a, b = port(view, "shape", "image", True), port(view, "save", "image", False)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=(a + b) / 2)
    assert list(editor.graph.layout["reroutes"]) == ["save.image"]
    assert len(view.graph_scene.reroutes) == 1


def test_bypass_mute_and_delete_keys(qtbot, window):
    editor, view = window.editor, window.view
    editor.select_nodes(["shape"])
    qtbot.keyClick(view, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert editor.graph.nodes["shape"].mode == "bypass"
    qtbot.keyClick(view, Qt.Key.Key_M)
    assert editor.graph.nodes["shape"].mode == "mute"
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert "shape" not in editor.graph.nodes and "shape" not in view.graph_scene.nodes


def test_zoom_keeps_the_point_under_the_cursor(qtbot, window):
    view = window.view
    anchor = QPoint(300, 200)
    before = view.mapToScene(anchor)
    view.zoom_by(1.5, anchor)
    after = view.mapToScene(anchor)
    assert abs(view.zoom() - 1.5) < 1e-9
    assert abs(before.x() - after.x()) < 2 and abs(before.y() - after.y()) < 2
    view.frame_all()
    shown = view.mapToScene(view.viewport().rect()).boundingRect()
    assert shown.contains(view.graph_scene.content_rect())


def test_zoomed_far_out_the_overview_still_selects_and_drags(qtbot, window):
    editor, view = window.editor, window.view
    view.resetTransform()
    view.scale(0.2, 0.2)
    view.centerOn(QPoint(300, 150))
    view.viewport().repaint()
    assert view.graph_scene.overview, "below the detail threshold the view batch-draws nodes"
    drag(qtbot, view, vp(view, -200, -300), vp(view, 800, 600))
    assert sorted(editor.selected_nodes()) == ["save", "shape"]
    start = vp(view, 100, 40)
    drag(qtbot, view, start, start + QPoint(20, 0), steps=2)
    assert editor.graph.layout["positions"]["shape"] == [100.0, 0.0]
    view.resetTransform()
    view.viewport().repaint()
    assert not view.graph_scene.overview


def test_minimap_toggles_and_a_click_moves_the_view(qtbot, window):
    view = window.view
    assert not view.minimap.isVisible()
    qtbot.keyClick(view, Qt.Key.Key_M, Qt.KeyboardModifier.AltModifier)
    assert view.minimap.isVisible()
    view.zoom_by(0.5)
    target = view.minimap.to_scene(QPoint(200, 140).toPointF())
    qtbot.mouseClick(view.minimap, Qt.MouseButton.LeftButton, pos=QPoint(200, 140))
    centre = view.mapToScene(view.viewport().rect().center())
    assert abs(centre.x() - target.x()) < 40 and abs(centre.y() - target.y()) < 40
    qtbot.keyClick(view, Qt.Key.Key_M, Qt.KeyboardModifier.AltModifier)
    assert not view.minimap.isVisible()


def test_a_reroute_dot_drags_and_space_drag_pans(qtbot, window):
    editor, view = window.editor, window.view
    a, b = port(view, "shape", "image", True), port(view, "save", "image", False)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=(a + b) / 2)
    ((x, y),) = editor.graph.layout["reroutes"]["save.image"]
    dot = vp(view, x, y)
    drag(qtbot, view, dot, dot + QPoint(0, 80), steps=4)
    assert editor.graph.layout["reroutes"]["save.image"] == [[x, y + 80]]
    before = view.mapToScene(QPoint(10, 10))
    qtbot.keyPress(view, Qt.Key.Key_Space)
    drag(qtbot, view, QPoint(600, 600), QPoint(500, 550))
    qtbot.keyRelease(view, Qt.Key.Key_Space)
    after = view.mapToScene(QPoint(10, 10))
    assert (round(after.x() - before.x()), round(after.y() - before.y())) == (100, 50)
    assert editor.graph.layout["positions"] == {"shape": [0, 0], "save": [320, 0]}, "panning moved nothing"


def test_dragging_a_linked_input_moves_or_drops_the_link(qtbot, window):
    editor, view = window.editor, window.view
    other = AddNode("image.preview", (320, 200))
    editor.push(other)
    drag(qtbot, view, port(view, "save", "image", False), port(view, other.node_id, "image", False))
    assert editor.graph.edges == [Edge("shape", "image", other.node_id, "image")]
    assert editor.history.undo_label == "Move link"
    drag(qtbot, view, port(view, other.node_id, "image", False), vp(view, 700, 600))
    assert editor.graph.edges == [] and not editor.search.isVisible()
    editor.history.undo()
    editor.history.undo()
    assert editor.graph.edges == [Edge("shape", "image", "save", "image")]
