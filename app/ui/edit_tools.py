"""Editing pictures in the editor: a mask brush on a Load Image node's picture, and a before/after wipe.

- Paint mask… (the Preview dock's menu on a Load Image picture): paint the region to repaint over the picture
  (left button paints, right button erases, the wheel or the slider sizes the brush). Save writes a black and
  white PNG (white = repaint) next to the graph (or under the output folder's `masks/` while it is unsaved),
  whole or not at all, and points the graph's mask Load Image (the one feeding a `mask_image` input) at it:
  one undo step. Painting on that mask node's own picture edits the mask directly.
- Compare with input… (on any other picture, when the graph loads a picture): the picture over the graph's
  input with a wipe slider, at the same scale.

Imports Qt and numpy; never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.graph.commands import SetParam

MASK_INPUTS = ("mask_image",)
OVERLAY = QColor(255, 40, 40, 140)


class MaskCanvas(QWidget):
    """The picture with the mask over it in translucent red; the mask is a grayscale QImage the size of the
    picture (255 = repaint). Brush positions map from the widget to picture pixels."""

    def __init__(self, picture: QImage, mask: QImage | None = None) -> None:
        super().__init__()
        self.picture = picture
        self.mask = QImage(picture.size(), QImage.Format.Format_Grayscale8)
        self.mask.fill(0)
        if mask is not None and mask.size() == picture.size():
            self.mask = mask.convertToFormat(QImage.Format.Format_Grayscale8)
        self.brush = max(2, min(picture.width(), picture.height()) // 16)
        self._last: QPointF | None = None
        self.setMinimumSize(256, 256)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def _scale(self) -> float:
        return min(self.width() / self.picture.width(), self.height() / self.picture.height())

    def to_picture(self, pos: QPointF) -> QPointF:
        scale = self._scale()
        left = (self.width() - self.picture.width() * scale) / 2
        top = (self.height() - self.picture.height() * scale) / 2
        return QPointF((pos.x() - left) / scale, (pos.y() - top) / scale)

    def stroke(self, start: QPointF, end: QPointF, paint: bool) -> None:
        """A round brush line in picture pixels: white (paint) or black (erase)."""
        painter = QPainter(self.mask)
        colour = QColor(255, 255, 255) if paint else QColor(0, 0, 0)
        painter.setPen(QPen(colour, self.brush, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        if start == end:  # a click: a dot the brush's size
            painter.setBrush(colour)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawEllipse(start, self.brush / 2, self.brush / 2)
        else:
            painter.drawLine(start, end)
        painter.end()
        self.update()

    def clear(self) -> None:
        self.mask.fill(0)
        self.update()

    def invert(self) -> None:
        self.mask.invertPixels()
        self.update()

    def mask_array(self) -> np.ndarray:
        """The mask as (H, W) uint8, 255 = repaint."""
        image = self.mask.convertToFormat(QImage.Format.Format_Grayscale8)
        rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
        return rows[:, : image.width()].copy()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._last = self.to_picture(event.position())
        self.stroke(self._last, self._last, event.button() == Qt.MouseButton.LeftButton)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._last is None:
            return
        here = self.to_picture(event.position())
        self.stroke(self._last, here, bool(event.buttons() & Qt.MouseButton.LeftButton))
        self._last = here

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._last = None

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.brush = max(1, min(512, self.brush + (1 if event.angleDelta().y() > 0 else -1)))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        scale = self._scale()
        w, h = self.picture.width() * scale, self.picture.height() * scale
        painter.translate((self.width() - w) / 2, (self.height() - h) / 2)
        painter.scale(scale, scale)
        painter.drawImage(0, 0, self.picture)
        overlay = QImage(self.picture.size(), QImage.Format.Format_ARGB32)
        overlay.fill(OVERLAY)
        overlay.setAlphaChannel(_scaled_alpha(self.mask, OVERLAY.alpha()))
        painter.drawImage(0, 0, overlay)
        painter.end()


def _scaled_alpha(mask: QImage, alpha: int) -> QImage:
    """The mask as an alpha channel at most `alpha` opaque."""
    rows = np.frombuffer(mask.constBits(), np.uint8).reshape(mask.height(), mask.bytesPerLine())
    values = np.ascontiguousarray((rows[:, : mask.width()].astype(np.uint16) * alpha // 255).astype(np.uint8))
    image = QImage(values.data, mask.width(), mask.height(), mask.width(), QImage.Format.Format_Grayscale8)
    return image.copy()


class MaskPainter(QDialog):
    """The brush dialog: the canvas, brush size, Clear, Invert, Save / Cancel."""

    def __init__(
        self, picture: QImage, mask: QImage | None, title: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Paint mask — {title} (white = repaint)")
        self.canvas = MaskCanvas(picture, mask)
        size = QSlider(Qt.Orientation.Horizontal)
        size.setRange(1, max(2, min(picture.width(), picture.height()) // 2))
        size.setValue(self.canvas.brush)
        size.valueChanged.connect(lambda v: setattr(self.canvas, "brush", v))
        clear, invert = QPushButton("Clear"), QPushButton("Invert")
        clear.clicked.connect(self.canvas.clear)
        invert.clicked.connect(self.canvas.invert)
        tools = QHBoxLayout()
        for widget in (QLabel("Brush"), size, clear, invert):
            tools.addWidget(widget)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(tools)
        layout.addWidget(buttons)
        self.resize(560, 620)


class BeforeAfter(QDialog):
    """Two pictures at the same scale, the after one wiped over the before one by a slider."""

    def __init__(self, before: QImage, after: QImage, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.before = before.scaled(after.size(), Qt.AspectRatioMode.IgnoreAspectRatio)
        self.after = after
        self.view = QLabel()
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(50)
        self.slider.valueChanged.connect(self._wipe)
        row = QHBoxLayout()
        row.addWidget(QLabel("before"))
        row.addWidget(self.slider, 1)
        row.addWidget(QLabel("after"))
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addLayout(row)
        self._wipe(50)

    def composite(self, percent: int) -> QImage:
        """Before left of the split, after right of it, a thin line between."""
        image = self.after.convertToFormat(QImage.Format.Format_RGB32)
        split = round(image.width() * percent / 100)
        painter = QPainter(image)
        if split > 0:  # a source width of 0 would mean the whole picture to Qt
            painter.drawImage(0, 0, self.before, 0, 0, split, image.height())
        painter.setPen(QPen(QColor(255, 255, 255), 1))
        painter.drawLine(split, 0, split, image.height())
        painter.end()
        return image

    def _wipe(self, percent: int) -> None:
        image = self.composite(percent)
        scale = max(1, 512 // max(image.width(), image.height()))
        self.view.setPixmap(QPixmap.fromImage(image.scaled(image.size() * scale)))


class EditTools:
    """The Preview dock's picture tools for the open graph: `editor` (graph, history), `runner` (pictures,
    output folder), `document_path()` (the graph's file or None)."""

    def __init__(self, editor: Any, runner: Any, document_path: Any) -> None:
        self.editor, self.runner, self.document_path = editor, runner, document_path
        self.dialog: QDialog | None = None

    def add_actions(self, menu: Any, node_id: str | None, image: QImage | None) -> None:
        graph = self.editor.graph
        if image is None or not node_id or node_id not in graph.nodes:
            return
        if graph.nodes[node_id].type == "image.load":
            menu.addAction("Paint mask…", lambda: self.paint_mask(node_id, image))
        elif self.input_node() is not None:
            menu.addAction("Compare with input…", lambda: self.compare(image))

    def mask_target(self, node_id: str) -> str | None:
        """The Load Image that feeds a mask input: the painted node itself when it does, else the one."""
        graph = self.editor.graph
        feeding = [e.src for e in graph.edges if e.dst_port in MASK_INPUTS and e.src_port == "image"]
        feeding = [n for n in dict.fromkeys(feeding) if graph.nodes[n].type == "image.load"]
        if node_id in feeding:
            return node_id
        return feeding[0] if len(feeding) == 1 else None

    def input_node(self) -> str | None:
        """The graph's input picture: a Load Image that feeds no mask input, with a picture shown already."""
        graph = self.editor.graph
        masks = {e.src for e in graph.edges if e.dst_port in MASK_INPUTS}
        for node in graph:
            if node.type == "image.load" and node.id not in masks and node.id in self.runner.pictures:
                return node.id
        return None

    def paint_mask(self, node_id: str, image: QImage) -> MaskPainter | None:
        target = self.mask_target(node_id)
        if target is None:
            self.editor.message.emit(
                "no mask to paint: connect a Load Image to the mask_image input of Set Latent Noise Mask or "
                "VAE Encode (for Inpainting) first"
            )
            return None
        photo = node_id if target != node_id else self.input_node()  # paint over the photo when there is one
        base = _as_qimage(self.runner.pictures[photo][0]) if photo and photo != node_id else image
        start = _as_qimage(self.runner.pictures[target][0]) if target in self.runner.pictures else None
        dialog = MaskPainter(base, start, self.editor.graph.nodes[photo or node_id].title or photo or node_id)
        dialog.accepted.connect(lambda: self.save_mask(target, dialog.canvas.mask_array(), photo or node_id))
        dialog.show()
        self.dialog = dialog
        return dialog

    def save_mask(self, target: str, mask: np.ndarray, source: str) -> Path | None:
        """Write the mask PNG (temp file, then rename) and point `target`'s path at it (one undo step)."""
        import cv2

        folder = _mask_folder(self.document_path(), Path(self.runner.output_dir))
        path = folder / f"{source}-mask.png"
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{path.name}.tmp.png"
        if not cv2.imwrite(str(temp), mask):
            temp.unlink(missing_ok=True)
            self.editor.message.emit(f"could not write {path}")
            return None
        temp.replace(path)
        self.editor.push(SetParam(target, "path", str(path)))
        self.editor.message.emit(f"mask saved to {path} and set on {target}")
        return path

    def compare(self, image: QImage) -> BeforeAfter | None:
        source = self.input_node()
        if source is None:
            return None
        before = _as_qimage(self.runner.pictures[source][0])
        dialog = BeforeAfter(before, image, f"Before / after — {source}")
        dialog.show()
        self.dialog = dialog
        return dialog


def _mask_folder(document: Path | None, output_dir: Path) -> Path:
    return document.parent if document is not None else output_dir / "masks"


def _as_qimage(picture: Any) -> QImage:
    from app.ui.run_state import to_qimage

    if isinstance(picture, QImage):
        return picture
    first = picture[0] if isinstance(picture, list) else picture
    return first if isinstance(first, QImage) else to_qimage(first)
