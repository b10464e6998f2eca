"""GraphScene: a QGraphicsScene that mirrors one Graph by listening to its events.

The scene never edits the graph; commands do, and the graph's events (node/edge added or removed,
param, mode, title and layout changes) add, remove, move or repaint items here. That is what keeps
undo, redo, paste and file loads in step with what is drawn. Per-node run state (badges, progress)
for live runs belongs on NodeItem and arrives the same way, from an event source, never from edits.
Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtWidgets import QGraphicsScene

from app.graph import types as T
from app.graph.model import Edge, Graph, SpecLookup, can_connect
from app.graph.ops import reroute_key
from app.graph.subgraphs import PREFIX
from app.ui import run_state, theme
from app.ui.items import EdgeItem, FrameItem, NodeItem, RerouteItem

SCENE_EXTENT = 200_000.0


class GraphScene(QGraphicsScene):
    """Items for every node, link, frame and reroute point of `graph`, kept in step with it."""

    def __init__(self, graph: Graph, specs: SpecLookup) -> None:
        super().__init__()
        self.specs = specs
        self.title_font = theme.ui_font(12, bold=True)
        self.row_font = theme.ui_font(11)
        self.small_font = theme.ui_font(10)
        self.frame_font = theme.ui_font(15, bold=True)
        self.setSceneRect(QRectF(-SCENE_EXTENT / 2, -SCENE_EXTENT / 2, SCENE_EXTENT, SCENE_EXTENT))
        self.selectionChanged.connect(self._overview_changed)
        self.link_drag: tuple[str, str, bool, str] | None = None  # node, port, from an output?, type
        self.zoom = 1.0  # of the view painting now (set per frame): items choose their level of detail
        self.overview = False  # zoomed far out: the view batch-draws nodes and links (app.ui.overview)
        self.overview_cache: Any = None
        self._accepts: dict[tuple[str, str, bool], bool] = {}
        self.nodes: dict[str, NodeItem] = {}
        self.edges: dict[Edge, EdgeItem] = {}
        self.frames: dict[str, FrameItem] = {}
        self.reroutes: dict[tuple[str, int], RerouteItem] = {}
        self._unsubscribe = lambda: None
        self.graph = graph
        self.set_graph(graph)

    # -- mirroring --------------------------------------------------------------------------------
    def set_graph(self, graph: Graph) -> None:
        """Show another graph (New/Open): drop every item and rebuild from `graph`."""
        self._unsubscribe()
        self.clearSelection()
        for item in [
            *self.edges.values(),
            *self.nodes.values(),
            *self.frames.values(),
            *self.reroutes.values(),
        ]:
            self.removeItem(item)
        self.nodes, self.edges, self.frames, self.reroutes = {}, {}, {}, {}
        self.graph = graph
        self.overview_cache = None
        for node_id in graph.nodes:
            self._add_node(node_id)
        for edge in graph.edges:
            self._add_edge(edge)
        self._sync_frames()
        self._sync_reroutes()
        self._unsubscribe = graph.subscribe(self._on_event)

    def detach(self) -> None:
        self._unsubscribe()
        self._unsubscribe = lambda: None

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        self._mirror(kind, data)
        self._overview_changed()

    def _overview_changed(self) -> None:
        self.overview_cache = None
        if self.overview:
            self.update()  # batch-drawn items do not repaint themselves

    def _mirror(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "node_added":
            self._add_node(data["node"].id)
        elif kind == "node_removed":
            self.removeItem(self.nodes.pop(data["node"].id))
        elif kind == "edge_added":
            self._add_edge(data["edge"])
            self._refresh_node(data["edge"].dst)
        elif kind == "edge_removed":
            edge = data["edge"]
            self.removeItem(self.edges.pop(edge))
            if edge.dst in self.nodes:
                self._refresh_node(edge.dst)
        elif kind == "param_changed":
            item = self.nodes[data["node"].id]
            spec = self.specs(data["node"].type)
            if spec is not None and data.get("name") in spec.controlling:
                self._refresh_node(item.node_id)  # other params appear or hide: the node's rows change
            else:
                item.invalidate()
        elif kind == "node_changed":
            node_id = data["node"].id
            self.nodes[node_id].restyle()
            for edge in self._edges_of(node_id):
                self.edges[edge].restyle()
        elif kind == "layout_changed":
            self._layout_changed(data["key"], data.get("item"))
        elif kind == "definition_changed":  # its instances may have other ports and params now
            for node_id in [n.id for n in self.graph if n.type == PREFIX + data["name"]]:
                self._refresh_node(node_id)

    def _layout_changed(self, key: str, item: str | None) -> None:
        if key == "positions":
            for node_id in [item] if item is not None else list(self.nodes):
                if node_id in self.nodes:
                    self._place(node_id)
        elif key == "frames":
            self._sync_frames()
        elif key == "reroutes":
            self._sync_reroutes()
        elif key == "sockets":
            for node_id in [item] if item is not None else list(self.nodes):
                if node_id in self.nodes:
                    self._refresh_node(node_id)
        elif key == "colours":
            for node_item in [self.nodes.get(item)] if item is not None else self.nodes.values():
                if node_item is not None:
                    node_item.update()

    def _add_node(self, node_id: str) -> None:
        item = NodeItem(self, node_id)
        item.setFlag(NodeItem.GraphicsItemFlag.ItemHasNoContents, self.overview)
        self.nodes[node_id] = item
        self.addItem(item)
        x, y = self.graph.layout.get("positions", {}).get(node_id, (0.0, 0.0))
        item.setPos(float(x), float(y))

    def _place(self, node_id: str) -> None:
        x, y = self.graph.layout.get("positions", {}).get(node_id, (0.0, 0.0))
        self.nodes[node_id].setPos(float(x), float(y))
        for edge in self._edges_of(node_id):
            self.edges[edge].refresh()

    def _refresh_node(self, node_id: str) -> None:
        if self.nodes[node_id].refresh_geometry():
            for edge in self._edges_of(node_id):
                self.edges[edge].refresh()

    def _add_edge(self, edge: Edge) -> None:
        item = EdgeItem(self, edge)
        item.setFlag(EdgeItem.GraphicsItemFlag.ItemHasNoContents, self.overview)
        self.edges[edge] = item
        self.addItem(item)

    def _edges_of(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if node_id in (e.src, e.dst)]

    def _sync_frames(self) -> None:
        frames = self.graph.layout.get("frames", {})
        for frame_id in [f for f in self.frames if f not in frames]:
            self.removeItem(self.frames.pop(frame_id))
        for frame_id in frames:
            if frame_id in self.frames:
                self.frames[frame_id].refresh()
            else:
                self.frames[frame_id] = FrameItem(self, frame_id)
                self.addItem(self.frames[frame_id])

    def _sync_reroutes(self) -> None:
        wanted = {
            (key, index): point
            for key, points in self.graph.layout.get("reroutes", {}).items()
            for index, point in enumerate(points)
        }
        keys = {a[0] for a in wanted} | {a[0] for a in self.reroutes}
        for address in [a for a in self.reroutes if a not in wanted]:
            self.removeItem(self.reroutes.pop(address))
        for address, (x, y) in wanted.items():
            if address not in self.reroutes:
                self.reroutes[address] = RerouteItem(self, *address)
                self.addItem(self.reroutes[address])
            self.reroutes[address].setPos(float(x), float(y))
        for edge, item in self.edges.items():
            if reroute_key(edge.dst, edge.dst_port) in keys:
                item.refresh()
        for (key, _), dot in self.reroutes.items():
            edge = self.edge_into(key)
            if edge is not None:
                dot.colour = theme.socket_colour(self.output_type(edge.src, edge.src_port))

    # -- run state: set by the runner from worker events, never by edits ----------------------------
    def set_run_state(self, node_id: str, run: run_state.RunState) -> None:
        """Show a node's state badge and progress."""
        item = self.nodes.get(node_id)
        if item is not None:
            item.set_run_state(run)

    def show_picture(self, node_id: str, picture: Any) -> None:
        """Show a node's picture as a thumbnail under it, or none (None)."""
        item = self.nodes.get(node_id)
        if item is not None:
            item.show_picture(picture)

    # -- queries for items and the view -------------------------------------------------------------
    def output_type(self, node_id: str, port: str) -> str:
        spec = self.specs(self.graph.nodes[node_id].type)
        out = spec.output_port(port) if spec else None
        return out.type if out else T.ANY

    def input_type(self, node_id: str, port: str) -> str:
        spec = self.specs(self.graph.nodes[node_id].type)
        kind = spec.input_type(port) if spec else None
        return kind or T.ANY

    def reroute_points(self, edge: Edge) -> list[list[float]]:
        return self.graph.layout.get("reroutes", {}).get(reroute_key(edge.dst, edge.dst_port), [])

    def edge_into(self, key: str) -> Edge | None:
        node_id, _, port = key.partition(".")
        return self.graph.input_edge(node_id, port)

    def refusal(self, edge: Edge) -> str | None:
        """Why dropping `edge` is refused; a taken input is fine (the new link replaces the old)."""
        reason = can_connect(self.graph, self.specs, edge)
        taken = self.graph.input_edge(edge.dst, edge.dst_port)
        if reason and taken is not None and "already linked" in reason:
            if taken == edge:
                return "these ports are already linked"
            if edge.src in self.graph.downstream(edge.dst):
                return f"linking {edge.src} -> {edge.dst} would make a cycle ({edge.dst} already feeds {edge.src})"
            return None
        return reason

    def begin_link_drag(self, node_id: str, port: str, output: bool, kind: str) -> None:
        self.link_drag = (node_id, port, output, kind)
        self._accepts.clear()
        for item in self.nodes.values():
            item.update()

    def end_link_drag(self) -> None:
        self.link_drag = None
        self._accepts.clear()
        for item in self.nodes.values():
            item.update()

    def drag_edge(
        self, node_id: str, port: str, output: bool, drag: tuple[str, str, bool, str] | None = None
    ) -> Edge | None:
        """The link a drag (default: the current one) makes by dropping on this port (None: wrong direction)."""
        drag = drag or self.link_drag
        if drag is None:
            return None
        src_node, src_port, from_output, _ = drag
        if output == from_output:
            return None
        if from_output:
            return Edge(src_node, src_port, node_id, port)
        return Edge(node_id, port, src_node, src_port)

    def port_accepts(self, node_id: str, port: str, output: bool) -> bool:
        key = (node_id, port, output)
        if key not in self._accepts:
            edge = self.drag_edge(node_id, port, output)
            self._accepts[key] = edge is not None and self.refusal(edge) is None
        return self._accepts[key]

    def node_at(self, pos: QPointF) -> NodeItem | None:
        for item in self.items(pos):
            if isinstance(item, NodeItem):
                return item
        return None

    def port_at(self, pos: QPointF) -> tuple[NodeItem, str, bool, str] | None:
        for item in self.items(QRectF(pos.x() - 12, pos.y() - 12, 24, 24)):
            if isinstance(item, NodeItem):
                hit = item.port_at(pos)
                if hit is not None:
                    return (item, *hit)
        return None

    def nodes_inside(self, rect: QRectF) -> list[str]:
        """Ids of nodes whose whole body lies inside `rect` (scene coordinates)."""
        return [
            node_id for node_id, item in self.nodes.items() if rect.contains(item.mapRectToScene(item.rect()))
        ]

    def content_rect(self) -> QRectF:
        rect = QRectF()
        for item in [*self.nodes.values(), *self.frames.values()]:
            rect = rect.united(item.mapRectToScene(item.boundingRect()))
        return rect
