"""What a node looks like during and after runs: a state badge in its title bar, a progress bar, a red
outline for errors, a small thumbnail of its picture under its body, and the hover text saying why.

`RunState` is plain data the runner sets on a NodeItem (through `GraphScene.set_run_state`); the functions
here paint it. Thumbnails are downscaled once when they arrive (never a full-size picture on the canvas).
Imports Qt and numpy only; never torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen

from app.ui.geometry import TITLE_H

if TYPE_CHECKING:
    from app.ui.items import NodeItem

THUMB_MAX = 160  # longest side of a node's thumbnail, in scene units
THUMB_GAP = 6.0
BADGE_R = 6.0
COLOURS = {
    "cached": QColor("#43a047"),
    "stale": QColor("#f0b429"),
    "running": QColor("#42a5f5"),
    "error": QColor("#e53935"),
    "blocked": QColor("#8d6e63"),
}
LABELS = {
    "cached": "Cached: its result is kept; it will not run again",
    "running": "Running",
    "blocked": "Blocked",
    "error": "Error",
}


@dataclass(frozen=True)
class RunState:
    """A node's state for the canvas: cached, stale, running, error, blocked, bypass, mute (or "")."""

    state: str = ""
    reason: str = ""
    step: int = 0
    total: int = 0

    def tooltip(self) -> str:
        if self.state == "stale":
            return f"Will run: {self.reason}" if self.reason else "Will run"
        if self.state == "running":
            return f"Running: step {self.step}/{self.total}" if self.total else "Running"
        if self.state in ("error", "blocked"):
            return f"{LABELS[self.state]}: {self.reason}"
        return LABELS.get(self.state, self.reason)


def to_qimage(picture: np.ndarray) -> QImage:
    """An owned QImage of an RGB uint8 (H, W, 3) array (or float 0..1)."""
    array = np.asarray(picture)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = np.ascontiguousarray(array[:, :, :3])
    height, width, _ = array.shape
    return QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def thumbnail(image: QImage, width: float) -> QImage:
    """`image` shrunk to fit a box `width` wide and THUMB_MAX tall (never enlarged)."""
    limit = int(min(width, THUMB_MAX))
    if image.width() <= limit and image.height() <= THUMB_MAX:
        return image
    return image.scaled(
        limit,
        THUMB_MAX,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )


def extra_height(item: NodeItem) -> float:
    """Room below the node body that its thumbnail takes."""
    thumb = item.thumb
    return 0.0 if thumb is None else THUMB_GAP + thumb_size(item, thumb)[1]


def thumb_size(item: NodeItem, thumb: QImage) -> tuple[float, float]:
    """Drawn size: small pictures are scaled up to the node's width, up to THUMB_MAX tall."""
    scale = min(item.geometry.width / thumb.width(), THUMB_MAX / thumb.height())
    return thumb.width() * scale, thumb.height() * scale


def paint(painter: QPainter, item: NodeItem) -> None:
    """Badge, progress bar, error outline and thumbnail of `item` (over its already painted body)."""
    run: RunState = item.run
    width = item.geometry.width
    colour = COLOURS.get(run.state)
    if colour is not None and item.node.mode == "normal":
        _badge(painter, QPointF(width - 14, TITLE_H / 2), run.state, colour)
    if run.state in ("running", "error"):
        painter.setPen(QPen(colour, 2.0))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(item.rect().adjusted(-1, -1, 1, 1), 7, 7)
    if run.state == "running":
        track = QRectF(6, TITLE_H - 5, width - 12, 4)
        painter.fillRect(track, QColor(0, 0, 0, 110))
        if run.total:
            done = QRectF(track.x(), track.y(), track.width() * run.step / run.total, track.height())
            painter.fillRect(done, colour)
    if item.thumb is not None:
        w, h = thumb_size(item, item.thumb)
        target = QRectF((width - w) / 2, item.geometry.height + THUMB_GAP, w, h)
        painter.drawImage(target, item.thumb)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 1.0))
        painter.drawRect(target)


def _badge(painter: QPainter, centre: QPointF, state: str, colour: QColor) -> None:
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(QColor(20, 20, 20), 1.0))
    painter.setBrush(colour)
    painter.drawEllipse(centre, BADGE_R, BADGE_R)
    x, y = centre.x(), centre.y()
    mark = QPainterPath()
    if state == "cached":
        mark.moveTo(x - 3, y)
        mark.lineTo(x - 1, y + 2.5)
        mark.lineTo(x + 3.2, y - 2.5)
    elif state == "error":
        mark.moveTo(x - 2.5, y - 2.5)
        mark.lineTo(x + 2.5, y + 2.5)
        mark.moveTo(x + 2.5, y - 2.5)
        mark.lineTo(x - 2.5, y + 2.5)
    elif state == "blocked":
        mark.moveTo(x - 3, y)
        mark.lineTo(x + 3, y)
    elif state == "running":
        mark.moveTo(x - 2, y - 3)
        mark.lineTo(x + 3, y)
        mark.lineTo(x - 2, y + 3)
        mark.closeSubpath()
    painter.setPen(QPen(QColor(20, 20, 20), 1.6))
    painter.setBrush(QColor(20, 20, 20) if state == "running" else Qt.BrushStyle.NoBrush)
    painter.drawPath(mark)


def apply(item: NodeItem, run: RunState | None = None, picture: Any = None) -> None:
    """Set a node's run state and/or picture (numpy or QImage), then repaint it with the right hover text."""
    if run is not None and run != item.run:
        item.run = run
        item.setToolTip(run.tooltip())
        item.update()
    if picture is not None:
        image = picture if isinstance(picture, QImage) else to_qimage(picture)
        item.prepareGeometryChange()
        item.thumb = thumbnail(image, item.geometry.width)
        item.refresh_bounds()
        item.update()
