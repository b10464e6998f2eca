"""Undoable edits of a Graph: one command object per user action, built from exact primitive ops.

A command's `build(rec)` performs its edit through a `Recorder` (app.graph.ops), which records the
inverse of every primitive step; undo replays the inverses backwards and redo replays the steps, so
both restore the serialized graph exactly. Commands carrying the same `gesture` token (one slider
drag, one typing burst, one mouse drag) merge into one undo step (see app.graph.history).

Edits of the editor layout alone (Move, SetLayout, AddFrame, AddReroute) are in layout_commands.py.
Editor layout lives in `Graph.layout`, beside the data the engine reads:
    layout["positions"][node_id] = [x, y]                  top-left corner of the node
    layout["colours"][node_id] = "#rrggbb"                 a user colour for the node body
    layout["frames"][frame_id] = {"title", "colour", "rect": [x, y, w, h]}
    layout["reroutes"]["<dst>.<port>"] = [[x, y], ...]     points along the link into that input
    layout["sockets"][node_id] = [param, ...]              linkable params shown as input sockets

Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from app.graph import serialize, subgraphs
from app.graph.clipboard import CLIP_KEY, INCOMING_KEY, incoming_links
from app.graph.model import Edge, Graph, Node, SpecLookup, can_connect
from app.graph.ops import Recorder, reroute_key, run_op, target


class CommandError(ValueError):
    """An edit that cannot be made; the message says why (shown to the user, never a traceback)."""


class Command:
    """Base class: subclasses set `label` and implement `build`; the history calls apply/revert."""

    label = "Edit"

    def __init__(self, gesture: Hashable | None = None) -> None:
        self.gesture = gesture
        self._ops: list[tuple[tuple[Any, ...], tuple[Any, ...]]] | None = None

    def build(self, rec: Recorder) -> None:
        raise NotImplementedError

    def apply(self, graph: Graph, specs: SpecLookup | None = None) -> None:
        """Do the edit (first time: build it; later: replay the recorded steps)."""
        if self._ops is None:
            rec = Recorder(graph, specs)
            try:
                self.build(rec)
            except Exception:
                rec.rollback()
                raise
            self._ops = rec.ops
            return
        for forward, _ in self._ops:
            run_op(graph, forward)

    def revert(self, graph: Graph) -> None:
        for _, inverse in reversed(self._ops or []):
            run_op(graph, inverse)

    @property
    def changed(self) -> bool:
        return bool(self._ops)

    def can_merge(self, other: Command) -> bool:
        return self.gesture is not None and other.gesture == self.gesture and type(other) is type(self)

    def merge(self, other: Command) -> None:
        """Fold `other` (already applied right after this one) into this command."""
        mine, theirs = self._ops or [], other._ops or []
        if [target(f) for f, _ in mine] == [target(f) for f, _ in theirs]:
            self._ops = [(f2, i1) for (_, i1), (f2, _) in zip(mine, theirs, strict=True)]
        else:
            self._ops = mine + theirs


class Batch(Command):
    """Several commands as one undo step (e.g. add a node and link it)."""

    def __init__(self, label: str, commands: Sequence[Command]) -> None:
        super().__init__()
        self.label = label
        self.commands = list(commands)

    def build(self, rec: Recorder) -> None:
        for command in self.commands:
            command.build(rec)


class AddNode(Command):
    """Add a node of a type with its spec's default params at a position; `node_id` is set by build."""

    label = "Add node"

    def __init__(self, type_id: str, pos: Sequence[float], params: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.type_id, self.pos, self.params = type_id, [float(pos[0]), float(pos[1])], params
        self.node_id = ""

    def build(self, rec: Recorder) -> None:
        spec = rec.specs(self.type_id) if rec.specs else None
        if rec.specs and spec is None:
            raise CommandError(f"unknown node type {self.type_id!r}")
        name = self.type_id.removeprefix(subgraphs.PREFIX)
        known = getattr(rec.specs, "definitions", {})  # a Registry knows the templates and opened subgraphs
        if name != self.type_id and name not in rec.graph.definitions and name in known:
            rec.set_definition(name, known[name])  # the graph file carries what its instances need
        params = spec.defaults() if spec else {}
        params.update(self.params or {})
        self.node_id = rec.graph.new_id(self.type_id)
        version = spec.version if spec else 1
        rec.add_node(Node(self.node_id, self.type_id, version=version, params=params))
        rec.set_layout_item("positions", self.node_id, self.pos)


class AddLinked(Command):
    """Add a node and link it to the port a dragged link came from, as one undo step: `link` is (node,
    port, from_output, ...); the new node's first input (or output) that accepts the link gets it."""

    label = "Add node"

    def __init__(self, type_id: str, pos: Sequence[float], link: Sequence[Any]) -> None:
        super().__init__()
        self.add = AddNode(type_id, pos)
        self.link = tuple(link)

    @property
    def node_id(self) -> str:
        return self.add.node_id

    def build(self, rec: Recorder) -> None:
        self.add.build(rec)
        node_id, port, from_output = self.link[:3]
        spec = rec.specs(self.add.type_id)
        if from_output:
            names = [p.name for p in spec.inputs] + [p.name for p in spec.params if p.linkable]
            candidates = [Edge(node_id, port, self.add.node_id, name) for name in names]
        else:
            candidates = [Edge(self.add.node_id, p.name, node_id, port) for p in spec.outputs]
        for edge in candidates:
            try:
                Connect(edge).build(rec)
                return
            except CommandError:
                continue


class Remove(Command):
    """Delete nodes (with their links and layout), links, frames and reroute points."""

    label = "Delete"

    def __init__(
        self,
        nodes: Iterable[str] = (),
        edges: Iterable[Edge] = (),
        frames: Iterable[str] = (),
        reroutes: Iterable[tuple[str, int]] = (),
    ) -> None:
        super().__init__()
        self.nodes, self.edges, self.frames = list(nodes), list(edges), list(frames)
        self.reroutes = sorted(reroutes, key=lambda r: (r[0], -r[1]))

    def build(self, rec: Recorder) -> None:
        layout = rec.graph.layout
        for key, index in self.reroutes:
            points = copy.deepcopy(layout.get("reroutes", {}).get(key, []))
            if 0 <= index < len(points):
                del points[index]
                rec.set_layout_item("reroutes", key, points or None)
        for edge in self.edges:
            if edge in rec.graph.edges:
                rec.disconnect(edge)
        for frame in self.frames:
            rec.set_layout_item("frames", frame, None)
        for node_id in self.nodes:
            if node_id in rec.graph.nodes:
                rec.remove_node(node_id)


class Connect(Command):
    """Link an output to an input; a link already feeding that input is replaced."""

    label = "Connect"

    def __init__(self, edge: Edge) -> None:
        super().__init__()
        self.edge = edge

    def build(self, rec: Recorder) -> None:
        graph, edge = rec.graph, self.edge
        taken = graph.input_edge(edge.dst, edge.dst_port)
        if taken == edge:
            return
        if taken is not None:
            rec.disconnect(taken)
        if rec.specs is not None:
            reason = can_connect(graph, rec.specs, edge)
            if reason:
                raise CommandError(reason)
        rec.connect(edge)


class Disconnect(Command):
    label = "Disconnect"

    def __init__(self, edges: Iterable[Edge]) -> None:
        super().__init__()
        self.edges = list(edges)

    def build(self, rec: Recorder) -> None:
        for edge in self.edges:
            if edge in rec.graph.edges:
                rec.disconnect(edge)


class SetParam(Command):
    """Set a param (checked against its spec); edits of one gesture on one param are one undo step."""

    label = "Set value"

    def __init__(self, node_id: str, name: str, value: Any, gesture: Hashable | None = None) -> None:
        super().__init__(gesture)
        self.node_id, self.name, self.value = node_id, name, value

    def build(self, rec: Recorder) -> None:
        node = rec.graph.node(self.node_id)
        spec = rec.specs(node.type) if rec.specs else None
        value = self.value
        param = spec.param(self.name) if spec else None
        if spec is not None and param is None:
            raise CommandError(f"node {self.node_id!r} ({spec.title}) has no param {self.name!r}")
        if param is not None:
            problem = param.check(value)
            if problem:
                raise CommandError(f"{self.node_id}.{self.name}: {problem}")
            value = param.normalise(value)
        if node.params.get(self.name, _MISSING) != value:
            rec.set_param(self.node_id, self.name, value)

    def can_merge(self, other: Command) -> bool:
        return (
            super().can_merge(other)
            and isinstance(other, SetParam)
            and (other.node_id, other.name) == (self.node_id, self.name)
        )


_MISSING = object()


class SetMode(Command):
    """Set nodes to normal, bypass (inputs pass through by type) or mute (not run)."""

    def __init__(self, node_ids: Iterable[str], mode: str) -> None:
        super().__init__()
        self.node_ids, self.mode = list(node_ids), mode
        self.label = {"bypass": "Bypass", "mute": "Mute"}.get(mode, "Unmute")

    def build(self, rec: Recorder) -> None:
        for node_id in self.node_ids:
            if rec.graph.node(node_id).mode != self.mode:
                rec.set_mode(node_id, self.mode)


class SetTitle(Command):
    label = "Rename"

    def __init__(self, node_id: str, title: str) -> None:
        super().__init__()
        self.node_id, self.title = node_id, title

    def build(self, rec: Recorder) -> None:
        rec.set_title(self.node_id, self.title)


class ConvertParam(Command):
    """Show a linkable param as an input socket, or turn the socket back into a value (unlinking it)."""

    def __init__(self, node_id: str, name: str, to_socket: bool) -> None:
        super().__init__()
        self.node_id, self.name, self.to_socket = node_id, name, to_socket
        self.label = "Convert to input" if to_socket else "Convert to value"

    def build(self, rec: Recorder) -> None:
        graph = rec.graph
        spec = rec.specs(graph.node(self.node_id).type) if rec.specs else None
        param = spec.param(self.name) if spec else None
        if spec is not None and (param is None or not param.linkable):
            raise CommandError(f"{self.node_id}.{self.name} is not a param that can take a link")
        shown = list(graph.layout.get("sockets", {}).get(self.node_id, []))
        if self.to_socket and self.name not in shown:
            rec.set_layout_item("sockets", self.node_id, [*shown, self.name])
        elif not self.to_socket:
            edge = graph.input_edge(self.node_id, self.name)
            if edge is not None:
                rec.disconnect(edge)
            if self.name in shown:
                shown.remove(self.name)
                rec.set_layout_item("sockets", self.node_id, shown or None)


class Paste(Command):
    """Add a copied sub-graph under new ids, keeping its internal links; `new_ids` maps old -> new. With
    `links`, the links that came into the copied nodes from outside are made again from the same outputs
    (where those nodes still exist and the input is free): Ctrl+Shift+V."""

    label = "Paste"

    def __init__(self, clip: dict[str, Any], at: Sequence[float], links: bool = False) -> None:
        super().__init__()
        self.clip, self.at, self.links = clip, (float(at[0]), float(at[1])), links
        self.new_ids: dict[str, str] = {}
        if links:
            self.label = "Paste with links"

    def build(self, rec: Recorder) -> None:
        try:
            part = serialize.from_dict(
                {k: v for k, v in self.clip.items() if k not in (CLIP_KEY, INCOMING_KEY)},
                rec.specs,
                source="clipboard",
            )
        except serialize.GraphFileError as error:
            raise CommandError(str(error)) from None
        graph = rec.graph
        positions = part.layout.get("positions", {})
        xs = [p[0] for p in positions.values()] or [0.0]
        ys = [p[1] for p in positions.values()] or [0.0]
        dx, dy = self.at[0] - min(xs), self.at[1] - min(ys)
        for node in part:
            new_id = graph.new_id(node.id)
            self.new_ids[node.id] = new_id
            rec.add_node(Node(new_id, node.type, node.version, node.params, node.mode, node.title))
            x, y = positions.get(node.id, [min(xs), min(ys)])
            rec.set_layout_item("positions", new_id, [x + dx, y + dy])
            for key in ("colours", "sockets"):
                if node.id in part.layout.get(key, {}):
                    rec.set_layout_item(key, new_id, part.layout[key][node.id])
        for edge in part.edges:
            new = Edge(self.new_ids[edge.src], edge.src_port, self.new_ids[edge.dst], edge.dst_port)
            if rec.specs is None or can_connect(graph, rec.specs, new) is None:
                rec.connect(new)
                points = part.layout.get("reroutes", {}).get(reroute_key(edge.dst, edge.dst_port))
                if points:
                    moved = [[x + dx, y + dy] for x, y in points]
                    rec.set_layout_item("reroutes", reroute_key(new.dst, new.dst_port), moved)
        if self.links:
            for src, src_port, dst, dst_port in incoming_links(self.clip):
                if src not in graph.nodes or dst not in self.new_ids:
                    continue
                new = Edge(src, src_port, self.new_ids[dst], dst_port)
                if graph.input_edge(new.dst, new.dst_port) is None and (
                    rec.specs is None or can_connect(graph, rec.specs, new) is None
                ):
                    rec.connect(new)
