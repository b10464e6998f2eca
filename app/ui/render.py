"""Headless canvas rendering: draw a graph as the editor shows it (fit to the image) into a PNG.

Used by `nodeloom render-graph` and the screenshot tests. Imports Qt only; never torch.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice, Qt
from PySide6.QtGui import QImage

from app.fsutil import atomic_write_bytes
from app.graph.model import Graph
from app.registry import Registry
from app.ui.editor import Editor


def render_graph(graph: Graph, registry: Registry, width: int, height: int) -> QImage:
    """The canvas of `graph` framed to fit a `width` x `height` image (needs a QApplication)."""
    editor = Editor(registry, graph)
    view = editor.view
    view.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
    view.resize(width, height)
    view.show()  # lays the viewport out at its real size (never on screen)
    view.frame_all()
    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    view.hide()
    editor.scene.detach()
    return image


def save_png(image: QImage, path: str | Path) -> Path:
    """Write `image` as PNG atomically."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError(f"could not encode {path} as PNG")
    return atomic_write_bytes(path, bytes(buffer.data()))
