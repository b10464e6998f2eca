"""Painted scene items: nodes (title, ports, one row per param), links, frames and reroute points.

Items only paint and answer hit tests; they read the Graph through their scene and never change it
(edits are commands). Below a zoom threshold they drop text and antialiasing so big graphs stay fast.
Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFontMetricsF,
    QImage,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
    QPolygonF,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.graph.model import Edge
from app.ui import run_state, theme
from app.ui.geometry import PORT_R, ROW_H, TITLE_H, format_value, node_geometry

if TYPE_CHECKING:
    from app.ui.scene import GraphScene

LOD_TEXT = 0.55  # below this zoom (row text under ~6 px), no port labels or param rows
LOD_DETAIL = 0.4  # below this (titles under ~5 px), the view batch-draws nodes as boxes, links as lines
Z_FRAME, Z_EDGE, Z_REROUTE, Z_NODE = -10.0, -1.0, 1.0, 2.0
RADIUS = 6.0


class NodeItem(QGraphicsItem):
    """One node, painted from its spec and params; ports are hit-tested, not separate items."""

    def __init__(self, scene: GraphScene, node_id: str) -> None:
        super().__init__()
        self.graph_scene, self.node_id = scene, node_id
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setZValue(Z_NODE)
        self.geometry = node_geometry(scene.graph, scene.graph.nodes[node_id], self.spec)
        self._rect = QRectF()
        self._bounds = QRectF()
        self._texts: tuple[list, list] | None = None
        self.run_view = run_state.RunView()  # badge, progress and thumbnail from live runs
        self._cache_rects()
        self.restyle()

    def _cache_rects(self) -> None:
        width, height = self.geometry.width, self.geometry.height
        self._rect = QRectF(0.0, 0.0, width, height)
        self.refresh_bounds()
        self._outline = QPainterPath()
        self._outline.addRoundedRect(self._rect, RADIUS, RADIUS)
        title = QPainterPath(QPointF(0, TITLE_H))
        title.lineTo(0, RADIUS)
        title.arcTo(QRectF(0, 0, 2 * RADIUS, 2 * RADIUS), 180, -90)
        title.lineTo(width - RADIUS, 0)
        title.arcTo(QRectF(width - 2 * RADIUS, 0, 2 * RADIUS, 2 * RADIUS), 90, -90)
        title.lineTo(width, TITLE_H)
        title.closeSubpath()
        self._title = title

    def refresh_bounds(self) -> None:
        """Bounds: the body, its ports, the run-state outline and the thumbnail under it."""
        extra = self.run_view.extra_height(self.geometry.width)
        self._bounds = self._rect.adjusted(-PORT_R - 2, -2, PORT_R + 2, 2 + extra)

    def restyle(self) -> None:
        """Pick up a mode, colour or type change (cached so zoomed-out frames paint fast)."""
        spec, mode = self.spec, self.node.mode
        colour = theme.category_colour(spec.category) if spec else theme.UNKNOWN
        self.box_colour = theme.BYPASS if mode == "bypass" else colour
        self.setOpacity(0.45 if mode == "mute" else 1.0)
        self.invalidate()

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
        self._cache_rects()
        self.invalidate()
        return moved

    def rect(self) -> QRectF:
        return self._rect

    def boundingRect(self) -> QRectF:
        return self._bounds

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
        rect = self._rect
        if self.graph_scene.zoom < LOD_DETAIL:
            painter.fillRect(rect, self.box_colour)
            if self.isSelected():
                painter.setPen(QPen(theme.SELECTED, 0))
                painter.drawRect(rect)
            return
        lod = self.graph_scene.zoom
        node, spec, selected = self.node, self.spec, self.isSelected()
        title_colour = theme.category_colour(spec.category) if spec else theme.UNKNOWN
        body = QColor(self.graph_scene.graph.layout.get("colours", {}).get(self.node_id, theme.NODE_BODY))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillPath(self._outline, body)
        painter.fillPath(self._title, theme.BYPASS if node.mode == "bypass" else title_colour)
        painter.setPen(QPen(theme.SELECTED if selected else theme.NODE_BORDER, 2.0 if selected else 1.0))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self._outline)
        if self._texts is None:
            self._texts = self._layout_texts()
        title_texts, row_texts = self._texts
        for pos, text, font, colour in title_texts if lod < LOD_TEXT else title_texts + row_texts:
            painter.setFont(font)
            painter.setPen(colour)
            painter.drawStaticText(pos, text)
        self._paint_ports(painter)
        self.run_view.paint(painter, self._rect, active=self.node.mode == "normal")

    @property
    def run(self) -> run_state.RunState:
        return self.run_view.run

    @property
    def thumb(self) -> QImage | None:
        return self.run_view.thumb

    def set_run_state(self, run: run_state.RunState) -> None:
        """Show a run state (badge, progress, hover text: what the node does, then its state)."""
        if self.run_view.set_run(run):
            self.setToolTip("\n\n".join(t for t in (self.describe(), run.tooltip()) if t))
            self.update()

    def describe(self) -> str:
        """What the node does: its type's title and the first sentences of its description."""
        spec = self.spec
        if spec is None:
            return f"{self.node.type}: a node type this Nodeloom does not know"
        text = " ".join(spec.description.split())
        cut = text.find(". ", 200)
        return f"{spec.title}: {text[: cut + 1] if cut > 0 else text}"

    def show_picture(self, picture: Any) -> None:
        """Show `picture` as the thumbnail under the node, or none (None)."""
        self.prepareGeometryChange()
        self.run_view.set_picture(picture, self.geometry.width)
        self.refresh_bounds()
        self.update()

    def invalidate(self) -> None:
        """Params, title or links changed: lay the painted text out again."""
        self._texts = None
        self.update()

    def _layout_texts(self) -> tuple[list, list]:
        """(position, text, font, colour) for the title and for the rows, laid out once per change."""
        node, spec, scene = self.node, self.spec, self.graph_scene
        width = self.geometry.width

        def text(value: str, font, colour, x: float, top: float, height: float, right: bool = False):
            static = QStaticText(value)
            static.setTextFormat(Qt.TextFormat.PlainText)
            static.prepare(QTransform(), font)
            size = static.size()
            left = x - size.width() if right else x
            return QPointF(left, top + (height - size.height()) / 2), static, font, colour

        label = node.title or (spec.title if spec else f"? {node.type}")
        label = QFontMetricsF(scene.title_font).elidedText(label, Qt.TextElideMode.ElideRight, width - 60)
        titles = [text(label, scene.title_font, theme.TEXT, 8, 0, TITLE_H)]
        if node.mode != "normal":
            titles.append(text(node.mode, scene.small_font, theme.TEXT, width - 8, 0, TITLE_H, right=True))
        rows = []
        linked = scene.graph.incoming(self.node_id)
        font = scene.row_font
        for row in self.geometry.rows:
            if row.param is None:
                if row.input:
                    rows.append(text(row.input, font, theme.TEXT_DIM, 12, row.y, ROW_H))
                if row.output:
                    rows.append(text(row.output, font, theme.TEXT_DIM, width - 12, row.y, ROW_H, right=True))
                continue
            param = spec.param(row.param) if spec else None
            value = node.params.get(row.param, param.default if param else None)
            rows.append(text(row.param, font, theme.TEXT_DIM, 12, row.y, ROW_H))
            is_linked = row.param in linked
            shown = "linked" if is_linked else format_value(value)
            colour = theme.TEXT_DIM if is_linked else theme.VALUE_TEXT
            rows.append(text(shown, font, colour, width - 12, row.y, ROW_H, right=True))
        return titles, rows

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
        self._bounds = QRectF()
        self.colour = theme.socket_colour(scene.output_type(edge.src, edge.src_port))
        self._thin = QPen(self.colour, 0)
        self.refresh()
        self.restyle()

    def restyle(self) -> None:
        """Links out of a muted node fade (cached for fast zoomed-out frames)."""
        muted = self.graph_scene.graph.nodes[self.edge.src].mode == "mute"
        self.setOpacity(0.35 if muted else 1.0)
        self.update()

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
        self._bounds = self.path.boundingRect().adjusted(-4, -4, 4, 4)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def shape(self) -> QPainterPath:
        return self._shape

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        selected = self.isSelected()
        if self.graph_scene.zoom < LOD_DETAIL and not selected:
            painter.setPen(self._thin)
        else:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(theme.SELECTED if selected else self.colour, 3.0 if selected else 2.0))
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
        if self.graph_scene.zoom >= LOD_DETAIL:
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
