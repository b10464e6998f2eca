"""The graph as data: nodes with readable ids, named params, links between named ports.

The editor mirrors a Graph by subscribing to its events; the engine reads it. Every mutation goes
through a method here so that listeners see it. Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.graph import types as T
from app.graph.spec import NodeSpec

SpecLookup = Callable[[str], NodeSpec | None]
Listener = Callable[[str, dict[str, Any]], None]

MODES = ("normal", "bypass", "mute")
_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class Node:
    """One node: its id, type (and the type's version it was saved with) and params by name."""

    id: str
    type: str
    version: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "normal"
    title: str = ""  # a user label; empty means the spec's title


@dataclass(frozen=True)
class Edge:
    """A link from an output port to an input port (or a linkable param) of another node."""

    src: str
    src_port: str
    dst: str
    dst_port: str

    def describe(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


def unique_name(stem: str, taken: Iterable[str]) -> str:
    """`stem`, or `stem_2`, `stem_3`, ... whichever is not in `taken`."""
    used = set(taken)
    if stem not in used:
        return stem
    index = 2
    while f"{stem}_{index}" in used:
        index += 1
    return f"{stem}_{index}"


class Graph:
    """Nodes keyed by id (insertion order kept), edges, and an opaque layout section for the editor."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.layout: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.definitions: dict[str, Any] = {}  # subgraph name -> subgraphs.Definition
        self.origin: dict[str, str] = {}  # in a flattened graph: inner node id -> its subgraph instance
        self._listeners: list[Listener] = []

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(kind, data)` after every mutation; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, kind: str, **data: Any) -> None:
        for listener in list(self._listeners):
            listener(kind, data)

    # -- queries ------------------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"no node with id {node_id!r}") from None

    def incoming(self, node_id: str) -> dict[str, Edge]:
        """Edges into `node_id`, by destination port."""
        return {e.dst_port: e for e in self.edges if e.dst == node_id}

    def outgoing(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.src == node_id]

    def input_edge(self, node_id: str, port: str) -> Edge | None:
        return next((e for e in self.edges if e.dst == node_id and e.dst_port == port), None)

    def downstream(self, node_id: str) -> set[str]:
        """Every node reachable from `node_id` along links (not including itself)."""
        children: dict[str, list[str]] = {}
        for edge in self.edges:
            children.setdefault(edge.src, []).append(edge.dst)
        seen: set[str] = set()
        stack = list(children.get(node_id, []))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(children.get(current, []))
        return seen

    def new_id(self, base: str) -> str:
        """A readable id not yet used: `base`, then `base_2`, `base_3`, ..."""
        stem = re.sub(r"[^A-Za-z0-9_]+", "_", base.split(".")[-1]).strip("_").lower() or "node"
        if stem[0].isdigit():
            stem = f"n{stem}"
        return unique_name(stem, self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    # -- mutations ----------------------------------------------------------------------------
    def add_node(self, node: Node, index: int | None = None) -> Node:
        """Add `node` (at `index` in the node order when given, for undo)."""
        if not _ID_RE.match(node.id):
            raise ValueError(f"node id {node.id!r} must start with a letter and hold letters, digits, _ or -")
        if node.id in self.nodes:
            raise ValueError(f"a node with id {node.id!r} exists already")
        if node.mode not in MODES:
            raise ValueError(f"node {node.id!r}: mode {node.mode!r} is not one of {MODES}")
        if index is None or index >= len(self.nodes):
            self.nodes[node.id] = node
        else:
            items = list(self.nodes.items())
            items.insert(index, (node.id, node))
            self.nodes = dict(items)
        self._emit("node_added", node=node)
        return node

    def remove_node(self, node_id: str) -> tuple[Node, list[Edge]]:
        """Remove a node and its links; returns both (commands record undo steps through ops.Recorder)."""
        node = self.node(node_id)
        removed = [e for e in self.edges if node_id in (e.src, e.dst)]
        for edge in removed:
            self.disconnect(edge)
        del self.nodes[node_id]
        self._emit("node_removed", node=node)
        return node, removed

    def connect(self, edge: Edge, index: int | None = None) -> Edge:
        """Add a link (at `index` in the edge order when given, for undo).

        Checks only that both nodes exist and the input is free; see `can_connect`.
        """
        self.node(edge.src)
        self.node(edge.dst)
        taken = self.input_edge(edge.dst, edge.dst_port)
        if taken is not None:
            raise ValueError(
                f"input {edge.dst}.{edge.dst_port} is already linked from {taken.src}.{taken.src_port}"
            )
        if index is None:
            self.edges.append(edge)
        else:
            self.edges.insert(index, edge)
        self._emit("edge_added", edge=edge)
        return edge

    def disconnect(self, edge: Edge) -> None:
        self.edges.remove(edge)
        self._emit("edge_removed", edge=edge)

    def set_param(self, node_id: str, name: str, value: Any) -> Any:
        """Set a param; returns the previous value (absent -> None)."""
        node = self.node(node_id)
        old = node.params.get(name)
        node.params[name] = value
        self._emit("param_changed", node=node, name=name, value=value, old=old)
        return old

    def remove_param(self, node_id: str, name: str) -> Any:
        """Drop a param so the spec default applies again (undo of setting an absent param)."""
        node = self.node(node_id)
        old = node.params.pop(name)
        self._emit("param_changed", node=node, name=name, value=None, old=old)
        return old

    def set_mode(self, node_id: str, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        node = self.node(node_id)
        old, node.mode = node.mode, mode
        self._emit("node_changed", node=node, field="mode", value=mode, old=old)
        return old

    def set_title(self, node_id: str, title: str) -> str:
        node = self.node(node_id)
        old, node.title = node.title, title
        self._emit("node_changed", node=node, field="title", value=title, old=old)
        return old

    def set_definition(self, name: str, definition: Any) -> Any:
        """Set (None: remove) the subgraph definition `name`; returns the previous one."""
        old = self.definitions.get(name)
        if definition is None:
            self.definitions.pop(name, None)
        else:
            self.definitions[name] = definition
        self._emit("definition_changed", name=name, value=definition, old=old)
        return old

    def set_layout(self, key: str, value: Any) -> Any:
        old = self.layout.get(key)
        if value is None:
            self.layout.pop(key, None)
        else:
            self.layout[key] = value
        self._emit("layout_changed", key=key, value=value, old=old)
        return old

    def set_layout_item(self, key: str, item: str, value: Any, index: int | None = None) -> Any:
        """Set `layout[key][item]` (None removes it; a new item goes at `index` when given, for undo).

        Creates the `key` section when missing; returns the previous value (absent -> None).
        """
        section = self.layout.setdefault(key, {})
        old = section.get(item)
        if value is None:
            section.pop(item, None)
        elif item in section or index is None or index >= len(section):
            section[item] = value
        else:
            entries = list(section.items())
            entries.insert(index, (item, value))
            self.layout[key] = dict(entries)
        self._emit("layout_changed", key=key, item=item, value=value, old=old)
        return old

    def copy(self) -> Graph:
        """A deep copy without listeners (the engine plans on copies, never on the live graph)."""
        clone = Graph()
        clone.nodes = {k: copy.deepcopy(v) for k, v in self.nodes.items()}
        clone.edges = list(self.edges)
        clone.layout = copy.deepcopy(self.layout)
        clone.meta = copy.deepcopy(self.meta)
        clone.definitions = dict(self.definitions)  # definitions are replaced whole, never edited in place
        clone.origin = dict(self.origin)
        return clone


def can_connect(graph: Graph, specs: SpecLookup, edge: Edge) -> str | None:
    """Why `edge` may not be added to `graph`, or None when it may.

    Refusals name the reason: unknown node or port, wrong direction, type mismatch, input already
    linked, or a cycle.
    """
    if edge.src not in graph.nodes or edge.dst not in graph.nodes:
        missing = edge.src if edge.src not in graph.nodes else edge.dst
        return f"no node with id {missing!r}"
    if edge.src == edge.dst:
        return "a node cannot feed itself"
    src_spec = specs(graph.nodes[edge.src].type)
    dst_spec = specs(graph.nodes[edge.dst].type)
    if src_spec is None or dst_spec is None:
        unknown = graph.nodes[edge.src if src_spec is None else edge.dst]
        return f"node {unknown.id!r} has unknown type {unknown.type!r}"
    src_port = src_spec.output_port(edge.src_port)
    if src_port is None:
        if src_spec.input_type(edge.src_port) is not None:
            return f"{edge.src}.{edge.src_port} is an input; links go from an output to an input"
        return f"node {edge.src!r} ({src_spec.title}) has no output {edge.src_port!r}"
    dst_type = dst_spec.input_type(edge.dst_port)
    if dst_type is None:
        if dst_spec.output_port(edge.dst_port) is not None:
            return f"{edge.dst}.{edge.dst_port} is an output; links go from an output to an input"
        if dst_spec.param(edge.dst_port) is not None:
            return f"param {edge.dst}.{edge.dst_port} cannot be fed by a link"
        return f"node {edge.dst!r} ({dst_spec.title}) has no input {edge.dst_port!r}"
    if not T.compatible(src_port.type, dst_type):
        return f"type mismatch: {edge.src}.{edge.src_port} gives {src_port.type}, {edge.dst}.{edge.dst_port} takes {dst_type}"
    taken = graph.input_edge(edge.dst, edge.dst_port)
    if taken is not None:
        return f"input {edge.dst}.{edge.dst_port} is already linked from {taken.src}.{taken.src_port}"
    if edge.src in graph.downstream(edge.dst):
        return f"linking {edge.src} -> {edge.dst} would make a cycle ({edge.dst} already feeds {edge.src})"
    return None
