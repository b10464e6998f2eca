"""The editor's picture tools on the shipped inpaint graph: the mask brush writes a black-and-white PNG whole and
points the mask Load Image at it (one undo step), and Compare with input wipes between the input and a result."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt

from app.graph import serialize
from app.registry import default_registry
from app.ui.run_state import to_qimage

ROOT = Path(__file__).resolve().parents[2]


def _window(qtbot, tmp_path):
    from app.ui.window import MainWindow

    registry = default_registry()
    graph = serialize.load(ROOT / "graphs" / "inpaint.json", registry)
    win = MainWindow(registry, graph)
    win.runner.output_dir = tmp_path / "out"
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    qtbot.waitExposed(win)
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[..., 2] = 200  # blue
    win.runner.pictures["image"] = (photo, "image")
    win.runner.pictures["mask"] = (np.zeros((40, 60, 3), np.uint8), "mask")
    return win, photo


def _menu_texts(dock) -> list[str]:
    return [action.text() for action in dock.menu().actions()]


def test_painting_a_mask_saves_a_png_and_sets_the_mask_node_in_one_undo_step(qtbot, tmp_path):
    win, photo = _window(qtbot, tmp_path)
    dock = win.run_controls.preview
    dock.show_picture("image", photo, "image")
    assert "Paint mask…" in _menu_texts(dock)
    old = win.editor.graph.nodes["mask"].params["path"]
    dialog = dock.tools.paint_mask("image", dock.image)
    canvas = dialog.canvas
    assert canvas.picture.size() == dock.image.size() and not canvas.mask_array().any()
    canvas.brush = 6
    centre = canvas.rect().center()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=centre)  # a dot where the widget's centre maps
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=centre)
    canvas.stroke(QPointF(5, 5), QPointF(15, 5), True)  # a drag, in picture pixels
    canvas.stroke(QPointF(5, 5), QPointF(8, 5), False)  # erased again at its start
    dialog.accept()
    path = Path(win.editor.graph.nodes["mask"].params["path"])
    assert path == tmp_path / "out" / "masks" / "image-mask.png"
    written = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert written.shape == (40, 60)
    assert written[20, 30] == 255 and written[5, 13] == 255  # the dot at the centre, the drag
    assert written[5, 5] == 0 and written[35, 5] == 0  # erased, never painted
    assert set(np.unique(written).tolist()) <= {0, 255}  # a hard mask: no antialiased grey
    assert not list(path.parent.glob(".*tmp*"))  # no temp file left behind
    win.editor.history.undo()
    assert win.editor.graph.nodes["mask"].params["path"] == old


def test_painting_starts_from_the_current_mask_and_names_a_missing_mask_input(qtbot, tmp_path):
    win, photo = _window(qtbot, tmp_path)
    current = np.zeros((40, 60, 3), np.uint8)
    current[10:20, 10:20] = 255
    win.runner.pictures["mask"] = (current, "mask")
    dialog = win.run_controls.preview.tools.paint_mask("image", to_qimage(photo))
    assert dialog.canvas.mask_array()[15, 15] == 255 and dialog.canvas.mask_array()[30, 30] == 0
    dialog.reject()
    win.editor.graph.disconnect(win.editor.graph.input_edge("masked", "mask_image"))
    messages = []
    win.editor.message.connect(messages.append)
    assert win.run_controls.preview.tools.paint_mask("image", to_qimage(photo)) is None
    assert "connect a Load Image to the mask_image input" in messages[-1]


def test_compare_with_input_wipes_between_the_input_and_the_result(qtbot, tmp_path):
    win, photo = _window(qtbot, tmp_path)
    result = np.zeros((40, 60, 3), np.uint8)
    result[..., 0] = 220  # red
    dock = win.run_controls.preview
    dock.show_picture("decode", result, "decode")
    assert "Compare with input…" in _menu_texts(dock) and "Paint mask…" not in _menu_texts(dock)
    dialog = dock.tools.compare(dock.image)
    half = dialog.composite(50)
    assert half.pixelColor(QPoint(10, 20)).blue() == 200  # left of the split: before
    assert half.pixelColor(QPoint(50, 20)).red() == 220  # right of it: after
    assert dialog.composite(0).pixelColor(QPoint(5, 20)).red() == 220
    assert dialog.composite(100).pixelColor(QPoint(55, 20)).blue() == 200


def test_a_node_that_saved_a_picture_offers_open_and_show_in_folder(qtbot, tmp_path):
    win, _ = _window(qtbot, tmp_path)
    texts = [a.text() for a in win.run_controls.node_menu("save", QPoint(0, 0)).actions()]
    assert "Open picture" not in texts  # nothing written yet
    win.runner.saved["save"] = [str(tmp_path / "inpaint_00001.png")]
    texts = [a.text() for a in win.run_controls.node_menu("save", QPoint(0, 0)).actions()]
    assert "Open picture" in texts and "Show in folder" in texts
