"""Mouse gestures on the canvas that edit the graph: drag a link, move items, knife, reroute.

Each finished gesture becomes one command (a move pushes a Move per mouse step with one gesture
token, so the whole drag is one undo step). Imports Qt only; never torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PySide6.QtCore import QLineF, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem

from app.graph.commands import Batch, Connect, Disconnect
from app.graph.layout_commands import AddReroute, Move
from app.graph.model import Edge
from app.ui import theme
from app.ui.items import EdgeItem, FrameItem, NodeItem, RerouteItem, link_path

if TYPE_CHECKING:
    from app.ui.view import GraphView


class Gestures:
    """The state of the mouse gesture in progress on one view (at most one at a time)."""

    def __init__(self, view: GraphView) -> None:
        self.view = view
        self.mode: str | None = None
        self.origin = QPointF()
        self.current = QPointF()
        self.knife: list[QPointF] = []
        self._token: object | None = None
        self._picked: Edge | None = None  # a link picked up by its input end
        self._nodes: dict[str, tuple[float, float]] = {}
        self._frames: dict[str, tuple[float, float]] = {}
        self._reroutes: dict[str, tuple[list[list[float]], set[int]]] = {}

    @property
    def scene(self):
        return self.view.graph_scene

    @property
    def editor(self):
        return self.view.editor

    def _scene_pos(self, event: QMouseEvent) -> QPointF:
        return self.view.mapToScene(event.position().toPoint())

    # -- press ------------------------------------------------------------------------------------
    def press(self, event: QMouseEvent) -> bool:
        """Start a gesture that replaces the default handling (links, knife); True when consumed."""
        pos = self._scene_pos(event)
        mods = event.modifiers()
        if event.button() == Qt.MouseButton.RightButton and mods & Qt.KeyboardModifier.ControlModifier:
            self.mode, self.knife = "knife", [pos]
            return True
        if event.button() == Qt.MouseButton.RightButton and mods & Qt.KeyboardModifier.ShiftModifier:
            hit = self.view.itemAt(event.position().toPoint())
            if isinstance(hit, EdgeItem):
                self.add_reroute(hit, pos)
                return True
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        port = self.scene.port_at(pos)
        if port is not None:
            item, name, output, kind = port
            linked = None if output else self.scene.graph.input_edge(item.node_id, name)
            if linked is not None:  # pick the link up by its end: it moves with the mouse
                self._picked = linked
                source = self.scene.nodes[linked.src]
                kind = self.scene.output_type(linked.src, linked.src_port)
                item, name, output = source, linked.src_port, True
            self.mode, self.origin, self.current = "link", item.port_pos(name, output), pos
            self.scene.begin_link_drag(item.node_id, name, output, kind)
            return True
        return False

    def after_press(self, event: QMouseEvent) -> None:
        """After Qt selected what was clicked: start moving the selection (frames take their contents)."""
        if event.button() != Qt.MouseButton.LeftButton:
            return
        hit = self.view.itemAt(event.position().toPoint())
        if not isinstance(hit, (NodeItem, FrameItem, RerouteItem)) or not hit.isSelected():
            return
        self.mode, self.origin, self._token = "move", self._scene_pos(event), object()
        layout = self.scene.graph.layout
        positions = layout.get("positions", {})
        self._nodes, self._frames, self._reroutes = {}, {}, {}
        selected: list[QGraphicsItem] = self.scene.selectedItems()
        for item in selected:
            if isinstance(item, FrameItem):
                x, y, w, h = item.data["rect"]
                self._frames[item.frame_id] = (x, y)
                inside = item.mapRectToScene(item.boundingRect())
                for node_id in self.scene.nodes_inside(inside):
                    self._nodes[node_id] = tuple(positions.get(node_id, (0.0, 0.0)))
                for (key, index), dot in self.scene.reroutes.items():
                    if inside.contains(dot.pos()):
                        self._reroute(key).add(index)
            elif isinstance(item, NodeItem):
                self._nodes[item.node_id] = tuple(positions.get(item.node_id, (0.0, 0.0)))
            elif isinstance(item, RerouteItem):
                self._reroute(item.key).add(item.index)

    def _reroute(self, key: str) -> set[int]:
        if key not in self._reroutes:
            points = self.scene.graph.layout.get("reroutes", {}).get(key, [])
            self._reroutes[key] = ([list(p) for p in points], set())
        return self._reroutes[key][1]

    # -- move / release -----------------------------------------------------------------------------
    def move(self, event: QMouseEvent) -> bool:
        if self.mode is None:
            return False
        pos = self._scene_pos(event)
        if self.mode == "knife":
            self.knife.append(pos)
        elif self.mode == "link":
            self.current = pos
        elif self.mode == "move":
            self._move_to(pos - self.origin)
        self.view.viewport().update()
        return True

    def _move_to(self, delta: QPointF) -> None:
        dx, dy = round(delta.x()), round(delta.y())
        nodes = {n: (x + dx, y + dy) for n, (x, y) in self._nodes.items()}
        frames = {f: (x + dx, y + dy) for f, (x, y) in self._frames.items()}
        reroutes = {
            key: [(x + dx, y + dy) if i in moving else (x, y) for i, (x, y) in enumerate(points)]
            for key, (points, moving) in self._reroutes.items()
        }
        self.editor.push(Move(nodes, frames, reroutes, gesture=self._token))

    def release(self, event: QMouseEvent) -> bool:
        mode, self.mode = self.mode, None
        if mode is None:
            return False
        pos = self._scene_pos(event)
        if mode == "knife":
            self.knife.append(pos)
            self._cut()
        elif mode == "link":
            self._drop_link(pos, event)
        self._token = None
        self.view.viewport().update()
        return mode != "move"

    def cancel(self) -> bool:
        if self.mode is None:
            return False
        if self.mode == "link":
            self.scene.end_link_drag()
        self.mode, self.knife, self._picked = None, [], None
        self.view.viewport().update()
        return True

    # -- links --------------------------------------------------------------------------------------
    def _drop_link(self, pos: QPointF, event: QMouseEvent) -> None:
        scene = self.scene
        drag, picked, self._picked = scene.link_drag, self._picked, None
        scene.end_link_drag()
        if drag is None or (picked is None and QLineF(self.origin, pos).length() < 6):
            return
        edge, reason = self._target_edge(pos, drag)
        if picked is not None and edge == picked:
            return  # dropped back where it was
        if reason:
            self.editor.refuse(reason, event)
        elif picked is not None:
            moved = [Disconnect([picked])] + ([Connect(edge)] if edge is not None else [])
            self.editor.push(Batch("Move link" if edge is not None else "Disconnect", moved))
        elif edge is not None:
            self.editor.push(Connect(edge))
        else:
            self.editor.open_search(pos, link=drag)

    def _target_edge(self, pos: QPointF, drag: tuple[str, str, bool, str]) -> tuple[Edge | None, str | None]:
        """The link a drop at `pos` makes (None on empty canvas), or why the drop is refused."""
        scene = self.scene
        node_id, _, from_output, kind = drag
        hit = scene.port_at(pos)
        if hit is not None:
            item, name, output, _ = hit
            edge = scene.drag_edge(item.node_id, name, output, drag)
            if edge is None:
                return None, "links go from an output to an input"
            return edge, scene.refusal(edge)
        target = scene.node_at(pos)
        if target is None:
            return None, None
        if target.node_id != node_id:
            ports = target.geometry.inputs if from_output else target.geometry.outputs
            for name in ports:
                edge = scene.drag_edge(target.node_id, name, not from_output, drag)
                if edge is not None and scene.refusal(edge) is None:
                    return edge, None
        side = "input" if from_output else "output"
        return None, f"{target.node_id} has no free {side} that takes {kind}"

    def add_reroute(self, item: EdgeItem, pos: QPointF) -> None:
        points = item.points()
        best, best_cost = 0, math.inf
        for index, (a, b) in enumerate(zip(points, points[1:], strict=False)):
            cost = QLineF(a, pos).length() + QLineF(pos, b).length() - QLineF(a, b).length()
            if cost < best_cost:
                best, best_cost = index, cost
        self.editor.push(AddReroute(item.edge, (round(pos.x()), round(pos.y())), best))

    def _cut(self) -> None:
        knife = [QLineF(a, b) for a, b in zip(self.knife, self.knife[1:], strict=False) if a != b]
        cut = []
        for edge, item in self.scene.edges.items():
            samples = [item.path.pointAtPercent(i / 32) for i in range(33)]
            segments = [QLineF(a, b) for a, b in zip(samples, samples[1:], strict=False)]
            if any(
                k.intersects(s)[0] == QLineF.IntersectionType.BoundedIntersection
                for k in knife
                for s in segments
            ):
                cut.append(edge)
        self.knife = []
        if cut:
            command = Disconnect(cut)
            command.label = "Cut links"
            self.editor.push(command)

    # -- overlay ----------------------------------------------------------------------------------------
    def paint_overlay(self, painter: QPainter) -> None:
        if self.mode == "link" and self.scene.link_drag is not None:
            _, _, from_output, kind = self.scene.link_drag
            a, b = (self.origin, self.current) if from_output else (self.current, self.origin)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(theme.socket_colour(kind), 2.0, Qt.PenStyle.DashLine))
            painter.drawPath(link_path([a, b]))
        elif self.mode == "knife" and len(self.knife) > 1:
            painter.setPen(QPen(theme.KNIFE, 0, Qt.PenStyle.DashLine))
            for a, b in zip(self.knife, self.knife[1:], strict=False):
                painter.drawLine(a, b)
