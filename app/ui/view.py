"""GraphView: the canvas widget. Zoom at the cursor, pan, rubber band, framing, grid, minimap.

Mouse gestures that edit (drag a link, move nodes, knife, reroute) live in app.ui.gestures; this
module routes events to them and keeps navigation. Imports Qt only; never torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QContextMenuEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QGraphicsView, QWidget

from app.ui import theme
from app.ui.gestures import Gestures
from app.ui.items import LOD_DETAIL, EdgeItem
from app.ui.minimap import Minimap
from app.ui.overview import paint_overview, set_overview
from app.ui.scene import GraphScene

if TYPE_CHECKING:
    from app.ui.editor import Editor

MIN_SCALE, MAX_SCALE = 0.03, 4.0
READABLE = 0.8  # the smallest zoom a graph opens at: row text about 9 px
GRID = 20.0


class GraphView(QGraphicsView):
    """The canvas; every edit it makes goes through `editor.push` as a command."""

    def __init__(self, scene: GraphScene, editor: Editor, parent: QWidget | None = None) -> None:
        super().__init__(scene, parent)
        self.editor = editor
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.ItemSelectionMode.IntersectsItemShape)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMouseTracking(True)
        self.gestures = Gestures(self)
        self._pan_from: QPoint | None = None
        self._space = False
        self.left_drag_pans = False  # a setting (View menu): left-drag on empty canvas pans, not selects
        self.minimap = Minimap(self)
        self.minimap.hide()
        self.on_drop_file: Callable[[str], None] | None = None
        self._grid_tiles: dict[float, QBrush] = {}
        self.setAcceptDrops(True)

    @property
    def graph_scene(self) -> GraphScene:
        return self.scene()  # type: ignore[return-value]

    # -- navigation -------------------------------------------------------------------------------
    def zoom(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float, anchor: QPoint | None = None) -> None:
        """Zoom by `factor`, keeping the scene point under `anchor` (view coords) where it is."""
        anchor = anchor if anchor is not None else self.viewport().rect().center()
        factor = max(MIN_SCALE / self.zoom(), min(MAX_SCALE / self.zoom(), factor))
        before = self.mapToScene(anchor)
        self.scale(factor, factor)
        after = self.mapToScene(anchor)
        self._shift(before - after)
        self.minimap.update()

    def _shift(self, delta: QPointF) -> None:
        """Move what the view shows by `delta` scene units."""
        zoom = self.zoom()
        for bar, amount in ((self.horizontalScrollBar(), delta.x()), (self.verticalScrollBar(), delta.y())):
            bar.setValue(bar.value() + round(amount * zoom))

    def pan_pixels(self, dx: float, dy: float) -> None:
        """Drag the canvas by (dx, dy) pixels: the content follows the mouse."""
        self._shift(QPointF(-dx / self.zoom(), -dy / self.zoom()))

    def frame_rect(self, rect: QRectF) -> None:
        if rect.isEmpty():
            return
        rect = rect.adjusted(-40, -40, 40, 40)
        port = self.viewport().rect()
        scale = min(port.width() / rect.width(), port.height() / rect.height(), 1.5)
        scale = max(MIN_SCALE, min(MAX_SCALE, scale))
        self.resetTransform()
        self.scale(scale, scale)
        self.centerOn(rect.center())
        self.minimap.update()

    def frame_all(self) -> None:
        self.frame_rect(self.graph_scene.content_rect())

    def frame_readable(self) -> None:
        """How a graph opens: all of it when that leaves its text readable, else at a readable zoom from its
        top-left corner (where the loaders usually are); Home shows all of it (and the minimap always does)."""
        rect = self.graph_scene.content_rect()
        self.frame_rect(rect)
        if rect.isEmpty() or self.zoom() >= READABLE:
            return
        self.resetTransform()
        self.scale(READABLE, READABLE)
        port = self.viewport().rect()
        seen = QRectF(rect.left() - 40, rect.top() - 40, port.width() / READABLE, port.height() / READABLE)
        self.centerOn(seen.center())
        self.minimap.update()

    def frame_selected(self) -> None:
        rect = QRectF()
        for item in self.graph_scene.selectedItems():
            rect = rect.united(item.mapRectToScene(item.boundingRect()))
        self.frame_rect(rect if not rect.isEmpty() else self.graph_scene.content_rect())

    def cursor_scene_pos(self) -> QPointF:
        local = self.viewport().mapFromGlobal(self.cursor().pos())
        if not self.viewport().rect().contains(local):
            local = self.viewport().rect().center()
        return self.mapToScene(local)

    # -- events -----------------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.15**steps, event.position().toPoint())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        selecting = event.modifiers() & Qt.KeyboardModifier.ShiftModifier  # Shift+drag still selects
        empty = self.left_drag_pans and not selecting and self.itemAt(event.position().toPoint()) is None
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and (self._space or empty)
        ):
            self._pan_from = event.position().toPoint()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if self.gestures.press(event):
            event.accept()
            return
        super().mousePressEvent(event)
        self.gestures.after_press(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            now = event.position().toPoint()
            delta = now - self._pan_from
            self._pan_from = now
            self.pan_pixels(delta.x(), delta.y())
            event.accept()
            return
        if self.gestures.move(event):
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_from = None
            self.viewport().unsetCursor()
            event.accept()
            return
        if self.gestures.release(event):
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        pos = self.mapToScene(event.position().toPoint())
        hit = self.itemAt(event.position().toPoint())
        node = self.graph_scene.node_at(pos) if event.button() == Qt.MouseButton.LeftButton else None
        name = self.editor.inline.row_at(node, pos) if node is not None else None
        if name is not None:
            self.editor.inline.open(node, name)  # edit the value on the node
        elif event.button() == Qt.MouseButton.LeftButton and isinstance(hit, EdgeItem):
            self.gestures.add_reroute(hit, pos)
        elif event.button() == Qt.MouseButton.LeftButton and hit is None:
            self.editor.open_search(pos)
        else:
            super().mouseDoubleClickEvent(event)
        event.accept()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        item = self.graph_scene.node_at(self.mapToScene(event.pos()))
        gesture = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier  # knife, reroute
        if (
            item is None
            and not event.modifiers() & gesture
            and self.scene().itemAt(self.mapToScene(event.pos()), self.transform()) is None
        ):  # empty canvas: the Add Node menu, by category
            self.editor.add_node_menu(self.mapToScene(event.pos())).popup(event.globalPos())
            event.accept()
            return
        if item is None or self.editor.node_menu is None or event.modifiers() & gesture:
            super().contextMenuEvent(event)
            return
        if not item.isSelected():
            self.editor.select_nodes([item.node_id])
        self.editor.node_menu(item.node_id, event.globalPos())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            event.accept()
            return
        if event.key() == Qt.Key.Key_Escape and self.gestures.cancel():
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        return False  # Tab opens the node search on the canvas; it never moves focus away

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if hasattr(self, "minimap"):  # Qt may resize or scroll while __init__ still runs
            self.minimap.place()

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        if hasattr(self, "minimap"):
            self.minimap.update()

    # -- dropped files (a graph JSON or a PNG carrying a graph) ------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and self.on_drop_file is not None:
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls() and self.on_drop_file is not None:
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files and self.on_drop_file is not None:
            event.acceptProposedAction()
            self.on_drop_file(files[0])
        else:
            super().dropEvent(event)

    # -- painting ---------------------------------------------------------------------------------
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        zoom = self.zoom()
        self.graph_scene.zoom = zoom  # items read it for their level of detail in this frame
        set_overview(self.graph_scene, zoom < LOD_DETAIL)
        painter.fillRect(rect, theme.BACKGROUND)
        if zoom < 0.3:
            return
        step = GRID if zoom >= 0.6 else GRID * 5
        if step not in self._grid_tiles:
            self._grid_tiles[step] = _grid_tile(step)
        painter.fillRect(rect, self._grid_tiles[step])  # a texture anchored at the scene origin

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if self.graph_scene.overview:
            paint_overview(self.graph_scene, painter, rect)
        self.gestures.paint_overlay(painter)


def _grid_tile(step: float) -> QBrush:
    """A 5 x 5 cell tile of the background grid (one major line, four minor) as a texture brush."""
    size = round(step * 5)
    tile = QPixmap(size, size)
    tile.fill(Qt.GlobalColor.transparent)
    painter = QPainter(tile)
    for index in range(5):
        painter.setPen(QPen(theme.GRID_MAJOR if index == 0 else theme.GRID_MINOR, 0))
        offset = round(index * step)
        painter.drawLine(offset, 0, offset, size)
        painter.drawLine(0, offset, size, offset)
    painter.end()
    return QBrush(tile)
