"""Painted scene items: nodes (title, ports, one row per param), links, frames and reroute points.

Items only paint and answer hit tests; they read the Graph through their scene and never change it
(edits are commands). Below a zoom threshold they drop text and antialiasing so big graphs stay fast.
Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPainterPathStroker, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.graph.model import Edge
from app.ui import theme
from app.ui.geometry import PORT_R, ROW_H, TITLE_H, format_value, node_geometry

if TYPE_CHECKING:
    from app.ui.scene import GraphScene

LOD_TEXT = 0.45  # below this zoom, no port labels or param rows
LOD_DETAIL = 0.28  # below this, a node is a plain coloured box and links are drawn without antialiasing
Z_FRAME, Z_EDGE, Z_REROUTE, Z_NODE = -10.0, -1.0, 1.0, 2.0


def _lod(painter: QPainter, option: QStyleOptionGraphicsItem) -> float:
    return option.levelOfDetailFromTransform(painter.worldTransform())


class NodeItem(QGraphicsItem):
    """One node, painted from its spec and params; ports are hit-tested, not separate items."""

    def __init__(self, scene: GraphScene, node_id: str) -> None:
        super().__init__()
        self.graph_scene, self.node_id = scene, node_id
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setZValue(Z_NODE)
        self.geometry = node_geometry(scene.graph, scene.graph.nodes[node_id], self.spec)

    @property
    def node(self):
        return self.graph_scene.graph.nodes[self.node_id]

    @property
    def spec(self):
        return self.graph_scene.specs(self.graph_scene.graph.nodes[self.node_id].type)

    def refresh_geometry(self) -> bool:
        """Recompute rows and ports; returns whether the ports moved (links then need a refresh)."""
        new = node_geometry(self.graph_scene.graph, self.node, self.spec)
        moved = (new.inputs, new.outputs, new.height) != (
            self.geometry.inputs,
            self.geometry.outputs,
            self.geometry.height,
        )
        if moved:
            self.prepareGeometryChange()
        self.geometry = new
        self.update()
        return moved

    def rect(self) -> QRectF:
        return QRectF(0.0, 0.0, self.geometry.width, self.geometry.height)

    def boundingRect(self) -> QRectF:
        return self.rect().adjusted(-PORT_R - 2, -2, PORT_R + 2, 2)

    def port_pos(self, name: str, output: bool) -> QPointF:
        ports = self.geometry.outputs if output else self.geometry.inputs
        x, y, _ = ports.get(name, (self.geometry.width if output else 0.0, TITLE_H / 2, ""))
        return self.pos() + QPointF(x, y)

    def port_at(self, scene_pos: QPointF) -> tuple[str, bool, str] | None:
        """(port name, is output, socket type) under `scene_pos`, generous to the fingers."""
        local = self.mapFromScene(scene_pos)
        for output, ports in ((False, self.geometry.inputs), (True, self.geometry.outputs)):
            for name, (x, y, kind) in ports.items():
                if abs(local.x() - x) <= PORT_R + 5 and abs(local.y() - y) <= ROW_H / 2:
                    return name, output, kind
        return None

    # -- painting ---------------------------------------------------------------------------------
    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        node, spec, rect = self.node, self.spec, self.rect()
        lod = _lod(painter, option)
        title_colour = theme.category_colour(spec.category) if spec else theme.UNKNOWN
        body = QColor(self.graph_scene.graph.layout.get("colours", {}).get(self.node_id, theme.NODE_BODY))
        selected = self.isSelected()
        if node.mode == "mute":
            painter.setOpacity(0.45)
        if lod < LOD_DETAIL:
            painter.fillRect(rect, title_colour)
            if selected:
                painter.setPen(QPen(theme.SELECTED, 0))
                painter.drawRect(rect)
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        outline = QPainterPath()
        outline.addRoundedRect(rect, 6, 6)
        painter.fillPath(outline, body)
        painter.save()
        painter.setClipPath(outline)
        painter.fillRect(
            QRectF(0, 0, rect.width(), TITLE_H), theme.BYPASS if node.mode == "bypass" else title_colour
        )
        painter.restore()
        painter.setPen(QPen(theme.SELECTED if selected else theme.NODE_BORDER, 2.0 if selected else 1.0))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(outline)
        painter.setPen(theme.TEXT)
        painter.setFont(self.graph_scene.title_font)
        label = node.title or (spec.title if spec else f"? {node.type}")
        text_rect = QRectF(8, 0, rect.width() - 16, TITLE_H)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, label)
        if node.mode != "normal":
            painter.setFont(self.graph_scene.small_font)
            painter.drawText(
                text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, node.mode
            )
        if lod >= LOD_TEXT:
            self._paint_rows(painter)
        self._paint_ports(painter)

    def _paint_rows(self, painter: QPainter) -> None:
        node, spec = self.node, self.spec
        width = self.geometry.width
        painter.setFont(self.graph_scene.row_font)
        linked = self.graph_scene.graph.incoming(self.node_id)
        left = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
        right = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight
        for row in self.geometry.rows:
            box = QRectF(12, row.y, width - 24, ROW_H)
            if row.param is None:
                painter.setPen(theme.TEXT_DIM)
                if row.input:
                    painter.drawText(box, left, row.input)
                if row.output:
                    painter.drawText(box, right, row.output)
                continue
            param = spec.param(row.param) if spec else None
            value = node.params.get(row.param, param.default if param else None)
            painter.setPen(theme.TEXT_DIM)
            painter.drawText(box, left, row.param)
            painter.setPen(theme.TEXT_DIM if row.param in linked else theme.VALUE_TEXT)
            shown = "linked" if row.param in linked else format_value(value)
            painter.drawText(box, right, shown)

    def _paint_ports(self, painter: QPainter) -> None:
        drag = self.graph_scene.link_drag
        for output, ports in ((False, self.geometry.inputs), (True, self.geometry.outputs)):
            for name, (x, y, kind) in ports.items():
                colour = theme.socket_colour(kind)
                if drag is not None:
                    ok = self.graph_scene.port_accepts(self.node_id, name, output)
                    colour = (
                        colour.lighter(130) if ok else QColor(colour.red(), colour.green(), colour.blue(), 45)
                    )
                    radius = PORT_R + (2.0 if ok else 0.0)
                else:
                    radius = PORT_R
                painter.setPen(QPen(theme.NODE_BORDER, 1.0))
                painter.setBrush(colour)
                _draw_socket(painter, QPointF(x, y), radius, theme.socket_shape(kind))


def _draw_socket(painter: QPainter, centre: QPointF, radius: float, shape: str) -> None:
    if shape == "diamond":
        cx, cy = centre.x(), centre.y()
        points = [
            QPointF(cx, cy - radius),
            QPointF(cx + radius, cy),
            QPointF(cx, cy + radius),
            QPointF(cx - radius, cy),
        ]
        painter.drawPolygon(QPolygonF(points))
    elif shape == "square":
        painter.drawRect(
            QRectF(centre.x() - radius + 1, centre.y() - radius + 1, 2 * radius - 2, 2 * radius - 2)
        )
    else:
        painter.drawEllipse(centre, radius, radius)


def link_path(points: list[QPointF]) -> QPainterPath:
    """A smooth path through `points`: horizontal-tangent cubic curves between neighbours."""
    path = QPainterPath(points[0])
    for start, end in zip(points, points[1:], strict=False):
        bend = max(40.0, abs(end.x() - start.x()) * 0.5)
        path.cubicTo(QPointF(start.x() + bend, start.y()), QPointF(end.x() - bend, end.y()), end)
    return path


class EdgeItem(QGraphicsItem):
    """A link, coloured by its source socket type, through its reroute points."""

    def __init__(self, scene: GraphScene, edge: Edge) -> None:
        super().__init__()
        self.graph_scene, self.edge = scene, edge
        self.setZValue(Z_EDGE)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.path = QPainterPath()
        self._shape = QPainterPath()
        self.colour = theme.socket_colour(scene.output_type(edge.src, edge.src_port))
        self.refresh()

    def points(self) -> list[QPointF]:
        scene, edge = self.graph_scene, self.edge
        start = scene.nodes[edge.src].port_pos(edge.src_port, True)
        end = scene.nodes[edge.dst].port_pos(edge.dst_port, False)
        middle = [QPointF(x, y) for x, y in scene.reroute_points(edge)]
        return [start, *middle, end]

    def refresh(self) -> None:
        self.prepareGeometryChange()
        self.path = link_path(self.points())
        stroker = QPainterPathStroker()
        stroker.setWidth(10.0)
        self._shape = stroker.createStroke(self.path)

    def boundingRect(self) -> QRectF:
        return self.path.boundingRect().adjusted(-4, -4, 4, 4)

    def shape(self) -> QPainterPath:
        return self._shape

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        lod = _lod(painter, option)
        muted = self.graph_scene.graph.nodes[self.edge.src].mode == "mute"
        colour = theme.SELECTED if self.isSelected() else self.colour
        if muted:
            colour = QColor(colour.red(), colour.green(), colour.blue(), 90)
        if lod < LOD_DETAIL:
            painter.setPen(QPen(colour, 0))
        else:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(colour, 3.0 if self.isSelected() else 2.0))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.path)


class FrameItem(QGraphicsItem):
    """A titled, coloured backdrop; dragging it moves the nodes inside it."""

    def __init__(self, scene: GraphScene, frame_id: str) -> None:
        super().__init__()
        self.graph_scene, self.frame_id = scene, frame_id
        self.setZValue(Z_FRAME)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self._rect = QRectF()
        self.refresh()

    @property
    def data(self) -> dict:
        return self.graph_scene.graph.layout["frames"][self.frame_id]

    def refresh(self) -> None:
        x, y, w, h = self.data["rect"]
        self.prepareGeometryChange()
        self.setPos(x, y)
        self._rect = QRectF(0, 0, w, h)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        colour = QColor(self.data.get("colour", "#5c6bc0"))
        fill = QColor(colour)
        fill.setAlpha(55)
        painter.setPen(QPen(theme.SELECTED if self.isSelected() else colour, 1.5))
        painter.setBrush(QBrush(fill))
        painter.drawRoundedRect(self._rect, 8, 8)
        if _lod(painter, option) >= LOD_DETAIL:
            painter.setPen(theme.TEXT)
            painter.setFont(self.graph_scene.frame_font)
            painter.drawText(
                self._rect.adjusted(10, 6, -10, 0), Qt.AlignmentFlag.AlignLeft, self.data.get("title", "")
            )


class RerouteItem(QGraphicsItem):
    """A dot on a link that bends it; it belongs to the link (layout["reroutes"]), not a node."""

    RADIUS = 5.0

    def __init__(self, scene: GraphScene, key: str, index: int) -> None:
        super().__init__()
        self.graph_scene, self.key, self.index = scene, key, index
        self.setZValue(Z_REROUTE)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.colour = theme.TEXT

    def boundingRect(self) -> QRectF:
        r = self.RADIUS + 2
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(theme.SELECTED if self.isSelected() else theme.NODE_BORDER, 1.5))
        painter.setBrush(self.colour)
        painter.drawEllipse(QPointF(0, 0), self.RADIUS, self.RADIUS)
