"""Subgraphs: a group of nodes kept once in a graph file's `definitions` and used as one node.

    {"definitions": {"subgraphs": {"ksampler": {
        "version": 1, "title": "KSampler", "description": "...",
        "nodes": {...}, "edges": [...],                                     as a graph's
        "inputs":  [{"name": "model", "to": [["schedule", "model"], ["sampler", "model"]]}, ...],
        "outputs": [{"name": "latent", "from": ["sampler", "latent"]}],
        "params":  [{"name": "seed", "to": [["sampler", "seed"]]}, ...]}}}}

An instance is a node of type `subgraph:<name>`: its inputs and outputs are the definition's, its params the
exposed ones (typed and ranged as the inner param they set; unset means the inner node's own value). Running
flattens: each instance becomes its inner nodes with ids `<instance>__<inner>`, exposed params written into
them, links rewired. Keys hold no node ids, so a grouped graph has the ungrouped graph's keys and shares its
cached results. `Graph.origin` maps each inner id back to its instance; the instance's representative (the
inner node behind its first output) gives it a key, a state and a picture.

Definitions carry a format `version` (1 now); `MIGRATIONS` lifts older ones on load, and inner nodes migrate
like any node. Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from app.graph.model import Edge, Graph, Node
from app.graph.spec import NodeSpec, PortSpec

PREFIX = "subgraph:"
SEPARATOR = "__"  # a flattened inner node's id: <instance>__<inner>
MAX_NODES = 20_000  # a flattened graph larger than this is refused (a file nesting subgraphs to explode)
VERSION = 1
MIGRATIONS: dict[int, Any] = {}  # version -> function(raw definition) -> raw definition of version + 1
Ends = tuple[tuple[str, str], ...]


class SubgraphError(ValueError):
    """A definition that cannot be used; the message names it."""


@dataclass
class Definition:
    name: str
    title: str
    graph: Graph  # the inner nodes and edges
    inputs: dict[str, Ends] = field(default_factory=dict)  # exposed input -> inner (node, port)s it feeds
    outputs: dict[str, tuple[str, str]] = field(default_factory=dict)  # exposed output -> inner (node, port)
    params: dict[str, Ends] = field(default_factory=dict)  # exposed param -> inner (node, param)s it sets
    description: str = ""

    @property
    def type(self) -> str:
        return PREFIX + self.name

    def representative(self) -> str | None:
        """The inner node that speaks for an instance (its first output's source)."""
        first = next(iter(self.outputs.values()), None)
        return first[0] if first else next(reversed(list(self.graph.nodes)), None)


def is_instance(node: Node) -> bool:
    return node.type.startswith(PREFIX)


def definition_of(graph: Graph, node: Node) -> Definition | None:
    """The definition `node` is an instance of, when it is one and `graph` holds it."""
    return graph.definitions.get(node.type[len(PREFIX) :]) if is_instance(node) else None


def flat_id(instance: str, inner: str) -> str:
    return f"{instance}{SEPARATOR}{inner}"


# -- the file section ---------------------------------------------------------------------------------
def to_json(definition: Definition, inner: dict[str, Any]) -> dict[str, Any]:
    """A definition as its file entry; `inner` is serialize.to_dict of its graph."""
    entry: dict[str, Any] = {"version": VERSION, "title": definition.title}
    if definition.description:
        entry["description"] = definition.description
    entry.update(nodes=inner["nodes"], edges=inner["edges"])
    if inner.get("layout"):
        entry["layout"] = inner["layout"]  # the inner nodes' places, for unpacking
    entry["inputs"] = [{"name": n, "to": [list(e) for e in ends]} for n, ends in definition.inputs.items()]
    entry["outputs"] = [{"name": n, "from": list(end)} for n, end in definition.outputs.items()]
    entry["params"] = [{"name": n, "to": [list(e) for e in ends]} for n, ends in definition.params.items()]
    return entry


def from_json(name: str, raw: Any, read_graph: Any) -> Definition:
    """A definition from its file entry (migrated to VERSION); `read_graph(dict)` builds the inner graph the
    way the file's own nodes and edges are read. Raises SubgraphError naming the definition."""
    where = f"subgraph {name!r}"
    if not isinstance(raw, dict):
        raise SubgraphError(f"{where} must be an object")
    version = raw.get("version", VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version:
        raise SubgraphError(f"{where}: 'version' must be a whole number >= 1")
    if version > VERSION:
        raise SubgraphError(f"{where}: version {version} is newer than this Nodeloom reads ({VERSION})")
    while version < VERSION:
        raw, version = MIGRATIONS[version](dict(raw)), version + 1
    inner = {"schema_version": 1, "nodes": raw.get("nodes", {}), "edges": raw.get("edges", [])}
    graph = read_graph({**inner, "layout": raw["layout"]} if "layout" in raw else inner)
    definition = Definition(
        name, str(raw.get("title") or name), graph, description=str(raw.get("description", ""))
    )
    for key, end_key in (("inputs", "to"), ("params", "to"), ("outputs", "from")):
        entries = raw.get(key, [])
        if not isinstance(entries, list):
            raise SubgraphError(f"{where}: '{key}' must be a list")
        for entry in entries:
            ends = _ends(where, key, entry, end_key, graph)
            target = getattr(definition, key)
            if entry["name"] in target:
                raise SubgraphError(f"{where}: {key[:-1]} {entry['name']!r} is declared twice")
            target[entry["name"]] = ends[0] if key == "outputs" else ends
    return definition


def _ends(where: str, key: str, entry: Any, end_key: str, graph: Graph) -> Ends:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise SubgraphError(f"{where}: each of '{key}' needs a 'name'")
    value = entry.get(end_key)
    pairs = [value] if key == "outputs" else value
    if not isinstance(pairs, list) or not pairs:
        raise SubgraphError(f"{where}: {key[:-1]} {entry['name']!r} needs '{end_key}'")
    ends = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise SubgraphError(f"{where}: {key[:-1]} {entry['name']!r}: each end is [node id, port]")
        if pair[0] not in graph.nodes:
            raise SubgraphError(f"{where}: {key[:-1]} {entry['name']!r} names a missing node {pair[0]!r}")
        ends.append((pair[0], pair[1]))
    return tuple(ends)


# -- the instance's spec ------------------------------------------------------------------------------
def spec_for(definition: Definition, lookup: Any) -> NodeSpec:
    """The node spec of `definition`'s instances: ports typed as the inner ports they stand for, params as
    the inner params they set (default: the inner node's value)."""
    inner = definition.graph

    def inner_spec(node_id: str) -> NodeSpec:
        spec = lookup(inner.nodes[node_id].type)
        if spec is None:
            raise SubgraphError(
                f"subgraph {definition.name!r}: unknown node type {inner.nodes[node_id].type!r}"
            )
        return spec

    inputs, outputs, params = [], [], []
    for name, ends in definition.inputs.items():
        ports = [next((p for p in inner_spec(n).inputs if p.name == port), None) for n, port in ends]
        if None in ports:
            raise SubgraphError(f"subgraph {definition.name!r}: input {name!r} feeds a port its node lacks")
        optional = all(p.optional for p in ports)
        inputs.append(PortSpec(name, ports[0].type, ports[0].description, optional=optional))
    for name, (node_id, port) in definition.outputs.items():
        found = inner_spec(node_id).output_port(port)
        if found is None:
            raise SubgraphError(
                f"subgraph {definition.name!r}: output {name!r}: {node_id} has no output {port!r}"
            )
        outputs.append(PortSpec(name, found.type, found.description))
    for name, ends in definition.params.items():
        node_id, param = ends[0]
        found = inner_spec(node_id).param(param)
        if found is None:
            raise SubgraphError(
                f"subgraph {definition.name!r}: param {name!r}: {node_id} has no param {param!r}"
            )
        default = inner.nodes[node_id].params.get(param, found.default)
        params.append(replace(found, name=name, default=default))
    return NodeSpec(
        type=definition.type,
        title=definition.title,
        category="subgraphs",
        description=definition.description or f"{len(inner.nodes)} nodes as one ({', '.join(inner.nodes)}).",
        run=_never_run,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        params=tuple(params),
    )


def _never_run(ctx: Any, **_values: Any) -> dict[str, Any]:
    raise RuntimeError("a subgraph instance runs as its flattened nodes, never itself")


# -- flattening for a run -----------------------------------------------------------------------------
def flatten(graph: Graph, depth: int = 8) -> tuple[Graph, list[tuple[str, str]]]:
    """The graph with every instance replaced by its inner nodes (`origin` says whose they are; instances
    inside definitions too, `depth` levels deep), and the (instance, why) of instances that cannot be
    flattened (no such definition, or nested deeper than `depth`): those stay as they are."""
    if not any(definition_of(graph, n) for n in graph):
        return graph, _said_once(graph, lambda n: _missing(n))
    size = sum(len(d.graph.nodes) if (d := definition_of(graph, n)) else 1 for n in graph)
    if depth == 0 or size > MAX_NODES:
        why = f"subgraphs nested too deep, or expanding past {MAX_NODES} nodes (is one inside itself?)"
        return graph, _said_once(graph, lambda n: why)
    return flatten(_flatten_once(graph), depth - 1)


def _said_once(graph: Graph, why: Any) -> list[tuple[str, str]]:
    """(the instance the user sees, why) for the instances left in `graph`, each said once."""
    return list(dict.fromkeys((graph.origin.get(n.id, n.id), why(n)) for n in graph if is_instance(n)))


def _missing(node: Node) -> str:
    return f"no subgraph definition {node.type[len(PREFIX) :]!r} in this graph"


def _flatten_once(graph: Graph) -> Graph:
    flat = Graph()
    flat.meta, flat.layout, flat.definitions = graph.meta, graph.layout, graph.definitions
    flat.origin = dict(graph.origin)
    outside: dict[tuple[str, str], tuple[str, str]] = {}  # (instance, output) -> inner (node, port) in flat
    inside: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (instance, input) -> inner ends in flat
    for node in graph:
        definition = definition_of(graph, node)
        if definition is None:
            flat.add_node(copy.deepcopy(node))
            continue
        rename = {inner: flat_id(node.id, inner) for inner in definition.graph.nodes}
        for inner in definition.graph:
            copied = copy.deepcopy(inner)
            copied.id = rename[inner.id]
            if node.mode != "normal":
                copied.mode = node.mode
            flat.add_node(copied)
            flat.origin[copied.id] = graph.origin.get(node.id, node.id)
        for name, ends in definition.params.items():
            if name in node.params:
                for inner_id, param in ends:
                    flat.nodes[rename[inner_id]].params[param] = copy.deepcopy(node.params[name])
        for edge in definition.graph.edges:
            flat.edges.append(Edge(rename[edge.src], edge.src_port, rename[edge.dst], edge.dst_port))
        for name, (inner_id, port) in definition.outputs.items():
            outside[(node.id, name)] = (rename[inner_id], port)
        for name, ends in [*definition.inputs.items(), *definition.params.items()]:
            inside[(node.id, name)] = [(rename[i], p) for i, p in ends]
    for edge in graph.edges:
        src, src_port = outside.get((edge.src, edge.src_port), (edge.src, edge.src_port))
        for dst, dst_port in inside.get((edge.dst, edge.dst_port), [(edge.dst, edge.dst_port)]):
            flat.edges.append(Edge(src, src_port, dst, dst_port))
    return flat


def representatives(graph: Graph) -> dict[str, str]:
    """instance id -> the inner id (in the flattened graph) that speaks for it."""
    found = {}
    for node in graph:
        definition = definition_of(graph, node)
        if definition is not None and definition.representative() is not None:
            found[node.id] = flat_id(node.id, definition.representative())
    return found


SILENT = ("finished", "cached")  # what an inner node that does not speak for its instance keeps to itself


def speaking_for(emit: Any, origin: dict[str, str], speakers: dict[str, str]) -> Any:
    """An event sink that says inner nodes' events on their instance: the speaker's all of them (its key is
    the instance's), the others' progress, previews, errors and outputs (with `inner` naming the node);
    their finished / cached events stay unsaid (their keys are not the instance's)."""
    voice = {inner: instance for instance, inner in speakers.items()}

    def said(event: dict[str, Any]) -> None:
        node = event.get("node")
        if node in voice:
            emit({**event, "node": voice[node]})
        elif node in origin:
            if event.get("event") not in SILENT:
                emit({**event, "node": origin[node], "inner": node})
        else:
            emit(event)

    return said


def instance_outputs(graph: Graph, values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each instance's outputs by its own port names, from its inner nodes' values (those that ran)."""
    found: dict[str, dict[str, Any]] = {}
    for node in graph:
        definition = definition_of(graph, node)
        for name, (inner, port) in definition.outputs.items() if definition else ():
            value = values.get(flat_id(node.id, inner), {})
            if port in value:
                found.setdefault(node.id, {})[name] = value[port]
    return found
