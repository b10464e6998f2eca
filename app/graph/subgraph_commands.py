"""Undoable subgraph edits: Group (selected nodes -> one instance of a new definition) and Ungroup (an
instance -> its inner nodes again). Both are built from the primitive ops, so undo restores the graph file
exactly; see app/graph/subgraphs.py for the format and how instances run.

Group exposes, as the instance's inputs, every link from outside into the group (one input per outside
output, feeding all the inner ports it fed, so `model` into Guidance and Sampler stays one input); as its
outputs, every inner output linked to outside; as params, the (node, param) pairs asked for. Pure data:
never import Qt or torch here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from app.graph.commands import Command, CommandError
from app.graph.model import Edge, Graph, Node, SpecLookup, unique_name
from app.graph.ops import Recorder
from app.graph.subgraphs import PREFIX, Definition


def _positions(graph: Graph, nodes: Iterable[str]) -> dict[str, list[float]]:
    placed = graph.layout.get("positions", {})
    return {n: list(placed[n]) for n in nodes if n in placed}


def definition_of(
    graph: Graph,
    nodes: Sequence[str],
    name: str,
    specs: SpecLookup | None,
    params: Sequence[tuple[str, str]] = (),
    inputs: Sequence[tuple[str, str]] = (),
    outputs: Sequence[tuple[str, str]] = (),
) -> tuple[Definition, list[tuple[str, str, str]], list[tuple[str, str, str]], dict[str, Any]]:
    """The definition grouping `nodes` of `graph`, with the wiring an instance needs: (outside source,
    its port, instance input) for links in, (instance output, outside node, its port) for links out,
    and the instance's params (the exposed ones' current values). Beside the links that cross the group's
    edge, `inputs` and `outputs` name more inner ports to expose (unlinked ones)."""
    inside = set(nodes)
    inner = Graph()
    for node_id in nodes:
        inner.add_node(copy.deepcopy(graph.nodes[node_id]))
    inner.edges = [e for e in graph.edges if e.src in inside and e.dst in inside]
    inner.layout = {"positions": _positions(graph, nodes)}
    definition = Definition(name, name.replace("_", " ").title(), inner)
    taken: set[str] = set()
    incoming, outgoing = [], []
    feeds: dict[tuple[str, str], str] = {}
    for edge in [e for e in graph.edges if e.dst in inside and e.src not in inside]:
        spec = specs(graph.nodes[edge.dst].type) if specs else None
        as_param = spec is not None and spec.input_type(edge.dst_port) is None
        exposed = feeds.get((edge.src, edge.src_port))
        if exposed is None or as_param != (exposed in definition.params):
            exposed = unique_name(edge.dst_port, taken)
            taken.add(exposed)
            feeds[(edge.src, edge.src_port)] = exposed
            incoming.append((edge.src, edge.src_port, exposed))
        target = definition.params if as_param else definition.inputs
        target[exposed] = (*target.get(exposed, ()), (edge.dst, edge.dst_port))
    for edge in [e for e in graph.edges if e.src in inside and e.dst not in inside]:
        exposed = next((n for n, end in definition.outputs.items() if end == (edge.src, edge.src_port)), None)
        if exposed is None:
            exposed = unique_name(edge.src_port, definition.outputs)  # outputs have names of their own
            definition.outputs[exposed] = (edge.src, edge.src_port)
        outgoing.append((exposed, edge.dst, edge.dst_port))
    for node_id, port in inputs:
        if node_id not in inside:
            raise CommandError(f"'{node_id}' is not one of the grouped nodes")
        if graph.input_edge(node_id, port) is None:  # a linked input is exposed already, or fed inside
            exposed = unique_name(port, taken)
            taken.add(exposed)
            definition.inputs[exposed] = ((node_id, port),)
    for node_id, port in outputs:
        if node_id not in inside:
            raise CommandError(f"'{node_id}' is not one of the grouped nodes")
        if (node_id, port) not in definition.outputs.values():
            definition.outputs[unique_name(port, definition.outputs)] = (node_id, port)
    values: dict[str, Any] = {}
    for node_id, param in params:
        if node_id not in inside:
            raise CommandError(f"'{node_id}' is not one of the grouped nodes")
        exposed = unique_name(param, taken)
        taken.add(exposed)
        definition.params[exposed] = ((node_id, param),)
        if param in graph.nodes[node_id].params:
            values[exposed] = copy.deepcopy(graph.nodes[node_id].params[param])
    return definition, incoming, outgoing, values


class Group(Command):
    """Make one subgraph instance of the given nodes (see the module docstring); `node_id` is set by build."""

    label = "Make subgraph"

    def __init__(
        self,
        nodes: Sequence[str],
        name: str = "",
        params: Sequence[tuple[str, str]] = (),
        inputs: Sequence[tuple[str, str]] = (),
        outputs: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__()
        self.nodes, self.name, self.params = list(nodes), name, list(params)
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.node_id = ""

    def build(self, rec: Recorder) -> None:
        graph = rec.graph
        nodes = [n for n in self.nodes if n in graph.nodes]
        if not nodes:
            raise CommandError("select the nodes to make a subgraph of")
        name = self.name or unique_name("group", graph.definitions)
        if "/" in name or not name.strip():
            raise CommandError(f"{name!r} cannot name a subgraph (no '/', not empty)")
        definition, incoming, outgoing, values = definition_of(
            graph, nodes, name, rec.specs, self.params, self.inputs, self.outputs
        )
        placed = list(_positions(graph, nodes).values()) or [[0.0, 0.0]]
        at = [min(p[0] for p in placed), min(p[1] for p in placed)]
        rec.set_definition(name, definition)
        for node_id in nodes:
            rec.remove_node(node_id)
        self.node_id = unique_name(name, graph.nodes)
        rec.add_node(Node(self.node_id, PREFIX + name, params=values))
        rec.set_layout_item("positions", self.node_id, at)
        for src, port, exposed in incoming:
            rec.connect(Edge(src, port, self.node_id, exposed))
        for exposed, dst, port in outgoing:
            rec.connect(Edge(self.node_id, exposed, dst, port))


class SetDefinition(Command):
    """Replace a subgraph definition (what editing its inside gives): every instance changes with it."""

    label = "Edit subgraph"

    def __init__(self, name: str, definition: Definition) -> None:
        super().__init__()
        self.name, self.definition = name, definition

    def build(self, rec: Recorder) -> None:
        rec.set_definition(self.name, self.definition)


def edited(definition: Definition, inner: Graph) -> Definition:
    """`definition` with its inside replaced by `inner`; exposed ports and params whose inner node is gone
    are dropped (links to them then show as problems on the instances)."""
    alive = set(inner.nodes)

    def keep(ends: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return tuple(end for end in ends if end[0] in alive)

    inputs = {n: keep(e) for n, e in definition.inputs.items() if keep(e)}
    params = {n: keep(e) for n, e in definition.params.items() if keep(e)}
    outputs = {n: end for n, end in definition.outputs.items() if end[0] in alive}
    copy_of = inner.copy()
    copy_of.definitions, copy_of.origin = {}, {}  # the outer graph's, lent while editing
    return Definition(
        definition.name, definition.title, copy_of, inputs, outputs, params, definition.description
    )


class Ungroup(Command):
    """Put an instance's inner nodes back in its place (exposed params written into them, links restored);
    the definition goes when no other instance uses it. `node_ids` is set by build."""

    label = "Unpack subgraph"

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.instance = node_id
        self.node_ids: list[str] = []

    def build(self, rec: Recorder) -> None:
        graph = rec.graph
        node = graph.nodes.get(self.instance)
        if node is None or not node.type.startswith(PREFIX):
            raise CommandError("select one subgraph node to unpack")
        name = node.type[len(PREFIX) :]
        definition = graph.definitions.get(name)
        if definition is None:
            raise CommandError(f"this graph has no subgraph definition {name!r}")
        origin = graph.layout.get("positions", {}).get(self.instance, [0.0, 0.0])
        inner_at = list(definition.graph.layout.get("positions", {}).values()) or [[0.0, 0.0]]
        corner = (min(p[0] for p in inner_at), min(p[1] for p in inner_at))
        incoming = [e for e in graph.edges if e.dst == self.instance]
        outgoing = [e for e in graph.edges if e.src == self.instance]
        rec.remove_node(self.instance)
        taken = set(graph.nodes)
        ids = {}
        for inner in definition.graph.nodes:
            ids[inner] = unique_name(inner, taken)
            taken.add(ids[inner])
        for inner in definition.graph:
            copied = copy.deepcopy(inner)
            copied.id = ids[inner.id]
            rec.add_node(copied)
            x, y = definition.graph.layout.get("positions", {}).get(inner.id, corner)
            rec.set_layout_item(
                "positions", copied.id, [origin[0] + x - corner[0], origin[1] + y - corner[1]]
            )
        for exposed, ends in definition.params.items():
            if exposed in node.params:
                for inner_id, param in ends:
                    rec.set_param(ids[inner_id], param, node.params[exposed])
        for edge in definition.graph.edges:
            rec.connect(Edge(ids[edge.src], edge.src_port, ids[edge.dst], edge.dst_port))
        for edge in incoming:
            for inner_id, port in definition.inputs.get(edge.dst_port) or definition.params.get(
                edge.dst_port, ()
            ):
                rec.connect(Edge(edge.src, edge.src_port, ids[inner_id], port))
        for edge in outgoing:
            inner_id, port = definition.outputs[edge.src_port]
            rec.connect(Edge(ids[inner_id], port, edge.dst, edge.dst_port))
        if not any(n.type == node.type for n in graph):
            rec.set_definition(name, None)
        self.node_ids = list(ids.values())
