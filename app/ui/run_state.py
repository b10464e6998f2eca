"""What a node looks like during and after runs: a state badge in its title bar, a progress bar, a red
outline for errors, a small thumbnail of its picture under its body, and the hover text saying why.

`RunState` is plain data the runner sets on a NodeItem (through `GraphScene.set_run_state`); `RunView`, owned
by each NodeItem, keeps it with the node's thumbnail and paints both. Thumbnails are downscaled once when they arrive (never a full-size picture on the canvas).
Imports Qt and numpy only; never torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen

from app.graph.model import Graph
from app.registry import Registry
from app.ui.geometry import TITLE_H

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
    step: float = 0  # a slow step reports fractions of itself (2.5 = halfway through the third)
    total: int = 0

    def tooltip(self) -> str:
        if self.state == "stale":
            return f"Will run: {self.reason}" if self.reason else "Will run"
        if self.state == "running":
            return f"Running: step {int(self.step)}/{self.total}" if self.total else "Running"
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


def grid(pictures: list[Any]) -> np.ndarray:
    """A batch of same-size pictures tiled in a near-square grid (2 columns for 2-4, 3 for 5-9, ...)."""
    frames = [np.asarray(p) for p in pictures]
    if frames[0].dtype != np.uint8:
        frames = [(np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8) for f in frames]
    columns = int(np.ceil(np.sqrt(len(frames))))
    rows = int(np.ceil(len(frames) / columns))
    height, width = frames[0].shape[:2]
    sheet = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        sheet[row * height : (row + 1) * height, column * width : (column + 1) * width] = frame[:, :, :3]
    return sheet


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


class RunView:
    """A node's run state and thumbnail, and how they are painted; each NodeItem owns one and paints it over
    its body, passing its own size (nodeeditor's node-painter pattern: the item never exposes its parts)."""

    def __init__(self) -> None:
        self.run = RunState()  # badge and progress from live runs
        self.thumb: QImage | None = None  # a small picture of the node's last result

    def set_run(self, run: RunState) -> bool:
        """Take a new state; True when it differs (the item repaints and updates its hover text)."""
        if run == self.run:
            return False
        self.run = run
        return True

    def set_picture(self, picture: Any, width: float) -> None:
        """Keep a thumbnail of `picture` (numpy, QImage, or a list of pictures: a batch, tiled) for a node
        `width` wide; None drops it."""
        if picture is None:
            self.thumb = None
            return
        if isinstance(picture, list):  # a batch: all of it, as a grid
            picture = grid(picture)
        image = picture if isinstance(picture, QImage) else to_qimage(picture)
        self.thumb = thumbnail(image, width)

    def extra_height(self, width: float) -> float:
        """Room below the node body that the thumbnail takes."""
        return 0.0 if self.thumb is None else THUMB_GAP + self._thumb_size(width)[1]

    def _thumb_size(self, width: float) -> tuple[float, float]:
        """Drawn size: small pictures are scaled up to the node's width, up to THUMB_MAX tall."""
        thumb = self.thumb
        scale = min(width / thumb.width(), THUMB_MAX / thumb.height())
        return thumb.width() * scale, thumb.height() * scale

    def paint(self, painter: QPainter, body: QRectF, active: bool) -> None:
        """Badge (when the node is `active`: not bypassed or muted), progress bar, error outline and
        thumbnail, over a node body `body` (already painted)."""
        run, width = self.run, body.width()
        colour = COLOURS.get(run.state)
        if colour is not None and active:
            _badge(painter, QPointF(width - 14, TITLE_H / 2), run.state, colour)
        if run.state in ("running", "error"):
            painter.setPen(QPen(colour, 2.0))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(body.adjusted(-1, -1, 1, 1), 7, 7)
        if run.state == "running":
            track = QRectF(6, TITLE_H - 5, width - 12, 4)
            painter.fillRect(track, QColor(0, 0, 0, 110))
            if run.total:
                done = QRectF(track.x(), track.y(), track.width() * run.step / run.total, track.height())
                painter.fillRect(done, colour)
        if self.thumb is not None:
            w, h = self._thumb_size(width)
            target = QRectF((width - w) / 2, body.height() + THUMB_GAP, w, h)
            painter.drawImage(target, self.thumb)
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


class RunScene(Protocol):
    """What a Runner paints on: each node's run state and picture."""

    def set_run_state(self, node_id: str, run: RunState) -> None: ...

    def show_picture(self, node_id: str, picture: Any) -> None: ...


class RunEditor(Protocol):
    """What a Runner needs of the editor it runs for."""

    graph: Graph
    registry: Registry
    scene: RunScene
