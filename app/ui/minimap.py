"""The minimap: an overlay in the canvas corner with every node and the visible area; click or drag
on it to move the view there. It paints from the graph's layout, not by rendering the scene.
Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QWidget

from app.ui import theme

if TYPE_CHECKING:
    from app.ui.view import GraphView

SIZE = (220, 150)
MARGIN = 12


class Minimap(QWidget):
    def __init__(self, view: GraphView) -> None:
        super().__init__(view)
        self.view = view
        self.resize(*SIZE)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def place(self) -> None:
        parent = self.view.rect()
        self.move(parent.width() - self.width() - MARGIN, parent.height() - self.height() - MARGIN)

    def toggle(self) -> None:
        self.setVisible(not self.isVisible())
        self.place()

    def _world(self) -> QRectF:
        rect = self.view.graph_scene.content_rect()
        visible = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        return rect.united(visible) if not rect.isEmpty() else visible

    def _mapping(self) -> tuple[QRectF, float]:
        world = self._world().adjusted(-50, -50, 50, 50)
        scale = min((self.width() - 8) / max(world.width(), 1), (self.height() - 8) / max(world.height(), 1))
        return world, scale

    def to_scene(self, point: QPointF) -> QPointF:
        world, scale = self._mapping()
        return QPointF(world.left() + (point.x() - 4) / scale, world.top() + (point.y() - 4) / scale)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(20, 21, 24, 220))
        painter.setPen(QPen(theme.GRID_MAJOR, 1))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        world, scale = self._mapping()

        def box(rect: QRectF) -> QRectF:
            return QRectF(
                4 + (rect.left() - world.left()) * scale,
                4 + (rect.top() - world.top()) * scale,
                max(rect.width() * scale, 1.5),
                max(rect.height() * scale, 1.5),
            )

        scene = self.view.graph_scene
        for frame in scene.frames.values():
            x, y, w, h = frame.data["rect"]
            colour = QColor(frame.data.get("colour", "#5c6bc0"))
            colour.setAlpha(70)
            painter.fillRect(box(QRectF(x, y, w, h)), colour)
        positions = scene.graph.layout.get("positions", {})
        for node_id, item in scene.nodes.items():
            x, y = positions.get(node_id, (0.0, 0.0))
            spec = item.spec
            colour = theme.category_colour(spec.category) if spec else theme.UNKNOWN
            painter.fillRect(box(QRectF(x, y, item.geometry.width, item.geometry.height)), colour)
        visible = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        painter.setPen(QPen(theme.SELECTED, 1))
        painter.drawRect(box(visible))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.view.centerOn(self.to_scene(event.position()))
        self.update()
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self.view.centerOn(self.to_scene(event.position()))
            self.update()
        event.accept()
