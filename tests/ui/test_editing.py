"""Inspector edits, clipboard, and files: undo steps, internal links kept, save/reopen, recovery, drops."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication

from app.graph import pngmeta, serialize
from app.graph.model import Edge
from app.ui import document
from tests.ui.conftest import SHAPES, vp

ROOT = Path(__file__).resolve().parents[2]


def _select(window, node_id):
    window.editor.select_nodes([node_id])
    assert window.inspector.node_id == node_id


def test_typing_in_a_number_field_is_one_undo_step(qtbot, window):
    _select(window, "shape")
    spin = window.inspector.widgets["size"]
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "0.45")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    graph, history = window.editor.graph, window.editor.history
    assert graph.nodes["shape"].params["size"] == 0.45
    assert len(history) == 1 and window.windowTitle().startswith("shapes.json*") is False
    assert "*" in window.windowTitle()
    history.undo()
    assert graph.nodes["shape"].params["size"] == 0.3
    qtbot.waitUntil(lambda: window.inspector.widgets["size"].value() == 0.3)  # the inspector follows undo
    history.redo()
    assert graph.nodes["shape"].params["size"] == 0.45


def test_a_slider_drag_is_one_undo_step(qtbot, window):
    _select(window, "shape")
    slider = window.inspector.widgets["x@slider"]
    slider.setSliderDown(True)  # what a mouse press on the handle does
    for position in (550, 600, 650, 700):
        slider.setSliderPosition(position)
    slider.setSliderDown(False)
    graph, history = window.editor.graph, window.editor.history
    assert graph.nodes["shape"].params["x"] == 0.7
    assert window.inspector.widgets["x"].value() == 0.7, "the spin box follows the slider"
    assert len(history) == 1
    slider.setSliderDown(True)
    slider.setSliderPosition(100)
    slider.setSliderDown(False)
    assert len(history) == 2, "a second drag is a second step"
    history.undo()
    history.undo()
    assert graph.nodes["shape"].params["x"] == 0.5


def test_choice_and_text_fields_and_param_to_socket(qtbot, window):
    editor = window.editor
    _select(window, "shape")
    window.inspector.widgets["shape"].setCurrentText("circle")
    assert editor.graph.nodes["shape"].params["shape"] == "circle"
    _select(window, "save")
    prefix = window.inspector.widgets["prefix"]
    prefix.setFocus()
    prefix.selectAll()
    qtbot.keyClicks(prefix, "cat")
    assert editor.graph.nodes["save"].params["prefix"] == "cat"
    assert len(editor.history) == 2, "one step for the combo, one for the typing burst"
    from app.graph.commands import AddNode

    add = AddNode("math.binary", (0, 400))
    editor.push(add)
    _select(window, add.node_id)
    button = window.inspector.widgets["@convert:a"]
    button.click()
    assert editor.graph.layout["sockets"][add.node_id] == ["a"]
    assert "a" in editor.scene.nodes[add.node_id].geometry.inputs
    qtbot.waitUntil(lambda: window.inspector.widgets["@convert:a"] is not button)
    window.inspector.widgets["@convert:a"].click()
    assert add.node_id not in editor.graph.layout["sockets"]
    assert "a" not in editor.scene.nodes[add.node_id].geometry.inputs


def test_copy_paste_keeps_internal_links_with_new_ids(qtbot, window):
    editor, view = window.editor, window.view
    editor.select_all()
    qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert json.loads(QGuiApplication.clipboard().text())["nodeloom_clip"] == 1
    view.cursor().setPos(view.viewport().mapToGlobal(vp(view, 0, 400)))
    qtbot.keyClick(view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    graph = editor.graph
    assert set(graph.nodes) == {"shape", "save", "shape_2", "save_2"}
    assert Edge("shape_2", "image", "save_2", "image") in graph.edges
    assert sorted(editor.selected_nodes()) == ["save_2", "shape_2"]
    assert len(editor.scene.edges) == 2
    qtbot.keyClick(view, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert len(graph.nodes) == 6 and len(graph.edges) == 3
    qtbot.keyClick(view, Qt.Key.Key_X, Qt.KeyboardModifier.ControlModifier)
    assert len(graph.nodes) == 4
    editor.history.undo()
    assert len(graph.nodes) == 6


def test_ctrl_shift_v_pastes_with_the_links_that_came_in_from_outside(qtbot, window):
    editor, view = window.editor, window.view
    editor.select_nodes(["save"])  # fed by shape.image
    qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    view.cursor().setPos(view.viewport().mapToGlobal(vp(view, 0, 400)))
    qtbot.keyClick(view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert "save_2" in editor.graph.nodes and editor.graph.input_edge("save_2", "image") is None
    qtbot.keyClick(
        view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert Edge("shape", "image", "save_3", "image") in editor.graph.edges
    editor.history.undo()
    assert (
        "save_3" not in editor.graph.nodes and Edge("shape", "image", "save", "image") in editor.graph.edges
    )
    editor.graph.remove_node("shape")  # the source is gone: the copy pastes without that link
    qtbot.keyClick(
        view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert "save_3" in editor.graph.nodes and editor.graph.input_edge("save_3", "image") is None
    assert "Paste with links" in [a.text() for a in window.menuBar().actions()[1].menu().actions()]


def test_save_and_reopen_gives_the_same_graph(qtbot, window, tmp_path, registry):
    from app.ui.window import MainWindow

    target = tmp_path / "copy.json"
    window.choose_save_path = lambda: str(target)
    window.editor.select_nodes(["shape"])
    qtbot.keyClick(window.view, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert window.windowTitle().startswith("untitled*")
    qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert window.windowTitle().startswith("copy.json —")
    assert document.recent_files() == [target.resolve()]
    other = MainWindow(registry)
    qtbot.addWidget(other)
    assert other.open_path(str(target))
    assert serialize.dumps(other.editor.graph) == serialize.dumps(window.editor.graph)
    assert other.editor.history.is_clean and len(other.editor.scene.nodes) == 2
    assert serialize.load(target, registry).nodes["shape"].mode == "bypass"


def test_closing_with_unsaved_changes_asks(qtbot, window):
    asked = []
    window.ask_save_changes = lambda: asked.append(1) or "cancel"
    window.editor.select_nodes(["shape"])
    qtbot.keyClick(window.view, Qt.Key.Key_M)
    assert not window.close() and window.isVisible() and asked == [1]
    window.ask_save_changes = lambda: "discard"
    assert window.close()


CRASH = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from app.ui.launch import application
    app = application()
    from app.graph import serialize
    from app.graph.commands import SetParam
    from tests.graph.conftest import light_registry
    from app.ui.window import MainWindow
    registry = light_registry()
    window = MainWindow(registry, serialize.load({graph!r}, registry), path=__import__("pathlib").Path({graph!r}))
    window.show()
    window.editor.push(SetParam("shape", "size", 0.12))
    window.autosave_timer.setInterval(50)
    window.autosave_timer.timeout.connect(lambda: os._exit(9))  # crash right after the first autosave
    app.exec()
    """
)


def test_autosave_is_offered_after_a_crash(qtbot, registry, tmp_path):
    from app.ui.window import MainWindow

    code = CRASH.format(root=str(ROOT), graph=str(ROOT / SHAPES))
    env = {**__import__("os").environ, "NODELOOM_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr
    assert document.recovery_path().is_file()
    window = MainWindow(registry)
    qtbot.addWidget(window)
    offered = []
    window.ask_recover = lambda path: offered.append(path) or True
    assert window.offer_recovery()
    assert offered == [ROOT / SHAPES]
    assert window.editor.graph.nodes["shape"].params["size"] == 0.12
    assert window.path == ROOT / SHAPES and "*" in window.windowTitle()
    assert not document.recovery_path().exists()


def test_autosave_writes_only_unsaved_changes_and_a_clean_close_removes_it(qtbot, window):
    window.autosave()
    assert not document.recovery_path().exists()
    window.editor.select_nodes(["save"])
    qtbot.keyClick(window.view, Qt.Key.Key_M)
    window.autosave()
    assert document.recovery_path().is_file()
    assert window.close()
    assert not document.recovery_path().exists()


def _drop(widget, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    point = QPointF(50, 50)
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(
        point.toPoint(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(point, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)


def test_dropping_a_png_that_carries_a_graph_opens_it(qtbot, window, tmp_path, registry):
    graph = serialize.load(SHAPES, registry)
    graph.nodes["shape"].params["colour"] = "green"
    png = pngmeta.add_text(
        (ROOT / "assets/examples/shape.png").read_bytes(), {"nodeloom": serialize.dumps(graph)}
    )
    path = tmp_path / "made.png"
    path.write_bytes(png)
    _drop(window.view.viewport(), path)
    assert window.editor.graph.nodes["shape"].params["colour"] == "green"
    assert window.path is None, "saving must never write JSON over the PNG"
    assert window.windowTitle().startswith("made.png (graph from image)")


def test_dropping_a_broken_file_warns_and_keeps_the_graph(qtbot, window, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    warnings = []
    window.warn = warnings.append
    _drop(window.view.viewport(), bad)
    assert warnings and "bad.json" in warnings[0] and "invalid JSON" in warnings[0]
    assert set(window.editor.graph.nodes) == {"shape", "save"}


def test_frame_title_colour_and_node_colour_from_the_inspector(qtbot, window):
    editor = window.editor
    editor.select_all()
    qtbot.keyClick(window.view, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    frame_id = next(iter(editor.graph.layout["frames"]))
    editor.scene.clearSelection()
    editor.scene.frames[frame_id].setSelected(True)
    assert window.inspector.frame_id == frame_id
    title = window.inspector.widgets["@frame_title"]
    title.setFocus()
    title.selectAll()
    qtbot.keyClicks(title, "Inputs")
    qtbot.keyClick(title, Qt.Key.Key_Return)
    assert editor.graph.layout["frames"][frame_id]["title"] == "Inputs"
    qtbot.waitUntil(
        lambda: (
            "@frame_colour" in window.inspector.widgets
            and window.inspector.widgets["@frame_title"] is not title
        )
    )
    window.inspector.widgets["@frame_colour"].setCurrentText("red")
    assert editor.graph.layout["frames"][frame_id]["colour"] == "#c62828"
    editor.history.undo()
    assert editor.graph.layout["frames"][frame_id]["colour"] == "#5c6bc0"
    _select(window, "shape")
    window.inspector.widgets["@colour"].setCurrentText("green")
    assert editor.graph.layout["colours"] == {"shape": "#2a4030"}
    window.inspector.widgets["@colour"].setCurrentText("default")
    assert editor.graph.layout["colours"] == {}


def test_a_lora_file_param_offers_the_files_of_the_loras_folder(qtbot):
    from app.registry import default_registry
    from app.ui.window import MainWindow

    registry = default_registry()
    win = MainWindow(registry, serialize.load("graphs/lora.json", registry))
    qtbot.addWidget(win)
    _select(win, "lora")
    offered = [
        win.inspector.widgets["lora_name"].itemText(i)
        for i in range(win.inspector.widgets["lora_name"].count())
    ]
    assert "tiny-shapes-outline.safetensors" in offered
    assert "tiny-shapes" not in offered  # checkpoints are not LoRAs
    _select(win, "model")
    checkpoints = win.inspector.widgets["checkpoint"]
    assert "tiny-random-sdxl" in [checkpoints.itemText(i) for i in range(checkpoints.count())]


def test_a_comfyui_workflow_opens_imported_and_never_saves_over_itself(qtbot, window, tmp_path):
    workflow = tmp_path / "comfy_default.json"
    workflow.write_bytes(
        (Path(__file__).parents[1] / "interop" / "workflows" / "default_sd15.json").read_bytes()
    )
    before = workflow.read_bytes()
    saved = tmp_path / "mine.json"
    window.choose_save_path = lambda: str(saved)
    assert window.open_path(str(workflow))  # what File > Open and a drop both call
    graph = window.editor.graph
    assert graph.nodes["ksampler_3"].type == "sampling.sampler" and "ksampler_3" in window.editor.scene.nodes
    assert window.path is None and "ComfyUI workflow" in window.windowTitle()
    assert (
        window.statusBar()
        .currentMessage()
        .startswith("imported ComfyUI workflow comfy_default.json: 7 nodes mapped")
    )
    qtbot.keyClick(
        window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier
    )  # Save asks where: never over it
    assert workflow.read_bytes() == before and serialize.load(saved, window.registry).nodes["ksampler_3"]


def test_params_that_do_not_apply_are_hidden_and_come_back_with_their_method(qtbot):
    """PAG's layers and scale only show for the methods that use them, in the inspector and on the node;
    switching the method in the inspector shows them at once, and undo hides them again."""
    from app.registry import default_registry
    from app.ui.window import MainWindow

    registry = default_registry()
    win = MainWindow(registry, serialize.load("graphs/txt2img.json", registry))
    qtbot.addWidget(win)
    _select(win, "guidance")
    assert "layers" not in win.inspector.widgets and "perturbed_scale" not in win.inspector.widgets
    assert "rescale" in win.inspector.widgets
    item = win.editor.scene.nodes["guidance"]
    rows = [row.param for row in item.geometry.rows if row.param]
    assert "layers" not in rows and "delta" not in rows
    height = item.geometry.height
    win.inspector.widgets["method"].setCurrentText("pag")
    qtbot.waitUntil(lambda: "layers" in win.inspector.widgets)
    assert "perturbed_scale" in win.inspector.widgets and "delta" not in win.inspector.widgets
    assert {"layers", "perturbed_scale"} <= {row.param for row in item.geometry.rows}
    assert item.geometry.height > height
    assert win.editor.graph.nodes["guidance"].params["layers"]  # hidden values were kept all along
    win.editor.history.undo()
    qtbot.waitUntil(lambda: "layers" not in win.inspector.widgets)
    assert item.geometry.height == height


def _row_point(window, node_id, param):
    item = window.editor.scene.nodes[node_id]
    row = next(r for r in item.geometry.rows if r.param == param)
    return vp(window.view, item.pos().x() + item.geometry.width - 30, item.pos().y() + row.y + 8)


def test_double_click_on_a_value_edits_it_on_the_node_as_one_undo_step(qtbot, window):
    view, editor = window.view, window.editor
    before = editor.graph.nodes["shape"].params["size"]
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_row_point(window, "shape", "size"))
    field = editor.inline.widget
    assert field is not None and field.text() == str(before)
    field.setText("0.25")
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert editor.graph.nodes["shape"].params["size"] == 0.25 and editor.inline.widget is None
    editor.history.undo()
    assert editor.graph.nodes["shape"].params["size"] == before
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_row_point(window, "shape", "size"))
    editor.inline.widget.setText("lots")
    messages = []
    editor.message.connect(messages.append)
    qtbot.keyClick(editor.inline.widget, Qt.Key.Key_Return)
    assert editor.graph.nodes["shape"].params["size"] == before and "shape.size" in messages[-1]
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_row_point(window, "shape", "shape"))
    combo = editor.inline.widget
    combo.setCurrentText("circle")
    combo.activated.emit(combo.currentIndex())
    assert editor.graph.nodes["shape"].params["shape"] == "circle"
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_row_point(window, "shape", "size"))
    qtbot.keyClick(editor.inline.widget, Qt.Key.Key_Escape)
    assert editor.inline.widget is None and editor.graph.nodes["shape"].params["shape"] == "circle"


def test_a_prompt_is_edited_in_a_text_box_on_the_node(qtbot):
    from app.registry import default_registry
    from app.ui.window import MainWindow

    registry = default_registry()
    win = MainWindow(registry, serialize.load("graphs/txt2img.json", registry))
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    qtbot.waitExposed(win)
    win.view.centerOn(win.editor.scene.nodes["prompt"])
    qtbot.mouseDClick(win.view.viewport(), Qt.MouseButton.LeftButton, pos=_row_point(win, "prompt", "text"))
    box = win.editor.inline.widget
    assert type(box).__name__ == "QPlainTextEdit"
    box.setPlainText("a red circle\non a blue background")
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert win.editor.graph.nodes["prompt"].params["text"] == "a red circle\non a blue background"


def test_left_drag_on_empty_canvas_pans_when_the_setting_is_on_and_it_is_remembered(qtbot, window):
    from app.ui import document

    view = window.view
    pans = window.actions_by_name["left_drag_pans"]
    assert not pans.isChecked()
    empty = vp(view, -600, -600)
    before = view.mapToScene(view.viewport().rect().center())
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=empty)
    qtbot.mouseMove(view.viewport(), empty + QPoint(80, 60))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=empty + QPoint(80, 60))
    assert view.mapToScene(view.viewport().rect().center()) == before  # off: a rubber band, no pan
    pans.setChecked(True)
    assert document.preferences()["left_drag_pans"] is True
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=empty)
    qtbot.mouseMove(view.viewport(), empty + QPoint(80, 60))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=empty + QPoint(80, 60))
    assert view.mapToScene(view.viewport().rect().center()) != before
    pans.setChecked(False)
    assert document.preferences()["left_drag_pans"] is False


def test_a_large_graph_opens_at_a_readable_zoom_and_home_shows_all_of_it(qtbot):
    from app.registry import default_registry
    from app.ui.view import READABLE
    from app.ui.window import MainWindow

    registry = default_registry()
    win = MainWindow(registry)
    qtbot.addWidget(win)
    win.resize(900, 600)
    win.show()
    qtbot.waitExposed(win)
    win.open_path(str(ROOT / "graphs" / "edit_inversion.json"))  # wider than the window at full size
    assert win.view.zoom() == READABLE
    shown = win.view.mapToScene(win.view.viewport().rect()).boundingRect()
    content = win.editor.scene.content_rect()
    assert shown.contains(content.topLeft()) and not shown.contains(content)
    win.view.frame_all()
    assert win.view.zoom() < READABLE
    win.open_path(str(ROOT / "graphs" / "shapes.json"))  # small: all of it, text readable
    assert win.view.zoom() >= READABLE
    assert (
        win.view.mapToScene(win.view.viewport().rect())
        .boundingRect()
        .contains(win.editor.scene.content_rect())
    )
