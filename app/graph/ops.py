"""Primitive graph edits with exact inverses: the atoms every undoable command is made of.

A `Recorder` performs primitive edits on a Graph (through its event-emitting methods, so the editor
sees them) and records, for each, the forward edit and the edit that undoes it exactly: nodes, edges,
params and layout items go back to the same place in their order, so undo restores the serialized
graph byte for byte. Ops are plain tuples:

    ("add_node", node, index)              ("remove_node", node_id)
    ("connect", edge, index)               ("disconnect", edge)
    ("param", node_id, name, value, present)   present=False removes the param
    ("mode", node_id, mode)                ("title", node_id, title)
    ("layout_item", key, item, value, index)   value None removes the item
    ("layout_key", key, value)             value None removes the whole section
    ("definition", name, definition)       a subgraph definition; None removes it

Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import copy
from typing import Any

from app.graph.model import Edge, Graph, Node, SpecLookup

Op = tuple[Any, ...]


def run_op(graph: Graph, op: Op) -> None:
    """Perform one primitive edit on `graph` (values are copied so ops stay reusable)."""
    kind = op[0]
    if kind == "add_node":
        graph.add_node(copy.deepcopy(op[1]), op[2])
    elif kind == "remove_node":
        graph.remove_node(op[1])
    elif kind == "connect":
        graph.connect(op[1], op[2])
    elif kind == "disconnect":
        graph.disconnect(op[1])
    elif kind == "param":
        _, node_id, name, value, present = op
        if present:
            graph.set_param(node_id, name, copy.deepcopy(value))
        else:
            graph.remove_param(node_id, name)
    elif kind == "mode":
        graph.set_mode(op[1], op[2])
    elif kind == "title":
        graph.set_title(op[1], op[2])
    elif kind == "layout_item":
        _, key, item, value, index = op
        graph.set_layout_item(key, item, copy.deepcopy(value), index)
    elif kind == "layout_key":
        graph.set_layout(op[1], copy.deepcopy(op[2]))
    elif kind == "definition":
        graph.set_definition(op[1], op[2])  # definitions are never edited in place: no copy needed
    else:
        raise ValueError(f"unknown graph op {kind!r}")


def target(op: Op) -> tuple[Any, ...]:
    """What an op changes (its kind and address, without the value), for merging repeated edits."""
    if op[0] in ("param", "layout_item"):
        return op[:3]
    if op[0] in ("mode", "title", "layout_key"):
        return op[:2]
    return (op[0], id(op))


def reroute_key(node_id: str, port: str) -> str:
    """Reroute points are stored per link, keyed by the input the link feeds (one link per input)."""
    return f"{node_id}.{port}"


class Recorder:
    """Performs primitive edits on a graph and records (forward, inverse) pairs for undo/redo."""

    def __init__(self, graph: Graph, specs: SpecLookup | None = None) -> None:
        self.graph = graph
        self.specs = specs
        self.ops: list[tuple[Op, Op]] = []

    def _do(self, forward: Op, inverse: Op) -> None:
        run_op(self.graph, forward)
        self.ops.append((forward, inverse))

    def rollback(self) -> None:
        """Undo everything recorded so far (a command that fails half-way leaves no trace)."""
        for _, inverse in reversed(self.ops):
            run_op(self.graph, inverse)
        self.ops.clear()

    # -- nodes and links ------------------------------------------------------------------------
    def add_node(self, node: Node, index: int | None = None) -> None:
        self._do(("add_node", copy.deepcopy(node), index), ("remove_node", node.id))

    def remove_node(self, node_id: str) -> None:
        """Remove a node with its links and every layout entry that belongs to it."""
        graph = self.graph
        for edge in [e for e in graph.edges if node_id in (e.src, e.dst)]:
            self.disconnect(edge)
        for key in ("positions", "colours", "sockets"):
            if node_id in graph.layout.get(key, {}):
                self.set_layout_item(key, node_id, None)
        index = list(graph.nodes).index(node_id)
        self._do(("remove_node", node_id), ("add_node", copy.deepcopy(graph.nodes[node_id]), index))

    def connect(self, edge: Edge) -> None:
        self._do(("connect", edge, None), ("disconnect", edge))

    def disconnect(self, edge: Edge) -> None:
        """Remove a link and its reroute points."""
        key = reroute_key(edge.dst, edge.dst_port)
        if key in self.graph.layout.get("reroutes", {}):
            self.set_layout_item("reroutes", key, None)
        index = self.graph.edges.index(edge)
        self._do(("disconnect", edge), ("connect", edge, index))

    # -- node fields ------------------------------------------------------------------------------
    def set_param(self, node_id: str, name: str, value: Any) -> None:
        params = self.graph.node(node_id).params
        inverse = ("param", node_id, name, copy.deepcopy(params.get(name)), name in params)
        self._do(("param", node_id, name, copy.deepcopy(value), True), inverse)

    def set_mode(self, node_id: str, mode: str) -> None:
        self._do(("mode", node_id, mode), ("mode", node_id, self.graph.node(node_id).mode))

    def set_title(self, node_id: str, title: str) -> None:
        self._do(("title", node_id, title), ("title", node_id, self.graph.node(node_id).title))

    def set_definition(self, name: str, definition: Any) -> None:
        old = self.graph.definitions.get(name)
        self._do(("definition", name, definition), ("definition", name, old))

    # -- layout -----------------------------------------------------------------------------------
    def set_layout_item(self, key: str, item: str, value: Any) -> None:
        """Set or (value None) remove `layout[key][item]`.

        A missing section is created (and dropped again on undo); an emptied one stays, so undo never
        has to re-create a section at its old place among the layout keys.
        """
        layout = self.graph.layout
        if key not in layout:
            if value is None:
                return
            self._do(("layout_key", key, {}), ("layout_key", key, None))
        section = layout[key]
        if value is None and item not in section:
            return
        old_index = list(section).index(item) if item in section else None
        inverse = ("layout_item", key, item, copy.deepcopy(section.get(item)), old_index)
        self._do(("layout_item", key, item, copy.deepcopy(value), None), inverse)
