"""Planning: the graph that will really run (bypass/mute applied), its order, and every problem at once.

`validate` reports ALL problems it finds, each naming the node and the port or param: unknown node
types, missing required inputs, type and model-family mismatches, bad param values, cycles, missing
files. Nothing here runs a node or imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from app.files import FileProblem, FileResolver
from app.graph import subgraphs
from app.graph import types as T
from app.graph.codes import ProblemCode
from app.graph.model import Edge, Graph
from app.graph.spec import NodeSpec
from app.registry import Registry


@dataclass(frozen=True)
class Problem:
    """One validation problem: which node, which port or param, what is wrong, and its machine-readable code."""

    node: str | None
    where: str | None
    message: str
    code: ProblemCode = ProblemCode.NODE_CHECK

    def __str__(self) -> str:
        if self.node is None:
            return self.message
        place = f"node '{self.node}'" + (f" '{self.where}'" if self.where else "")
        return f"{place}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "where": self.where, "message": self.message, "code": str(self.code)}


class Index:
    """Incoming edges per node, built once (graph.incoming is O(edges) per call)."""

    def __init__(self, graph: Graph) -> None:
        self.incoming: dict[str, dict[str, Edge]] = {node_id: {} for node_id in graph.nodes}
        self.children: dict[str, list[str]] = {node_id: [] for node_id in graph.nodes}
        for edge in graph.edges:
            if edge.dst in self.incoming and edge.src in self.children:
                self.incoming[edge.dst][edge.dst_port] = edge
                self.children[edge.src].append(edge.dst)


def said_once(problems: list[Problem]) -> list[Problem]:
    """`problems` without the "required input is not connected" of inputs whose link a bypassed or muted
    node took away: that is said once, as such (`effective_graph`'s INPUT_REMOVED problem)."""
    removed = {(p.node, p.where) for p in problems if p.code == ProblemCode.INPUT_REMOVED}
    return [
        p
        for p in problems
        if not (p.code == ProblemCode.REQUIRED_INPUT_MISSING and (p.node, p.where) in removed)
    ]


def effective_graph(graph: Graph, registry: Registry) -> tuple[Graph, list[Problem]]:
    """The graph as it runs: muted nodes removed, bypassed nodes replaced by pass-through links.

    A bypassed node passes, for each output, its first connected input of a compatible type.
    """
    graph, _ = subgraphs.flatten(graph)  # an instance without a definition stays, for `validate` to name
    problems: list[Problem] = []
    if all(node.mode == "normal" for node in graph):
        return graph, problems
    result = graph.copy()
    for node in graph:
        if node.mode == "normal":
            continue
        spec = registry.get(node.type)
        replacement: dict[str, Edge] = {}
        if node.mode == "bypass" and spec is not None:
            # the current edges, so a chain of bypassed nodes passes through all of them
            incoming = [e for e in result.edges if e.dst == node.id]
            for port in spec.outputs:
                source = next(
                    (
                        e
                        for e in incoming
                        if (kind := spec.input_type(e.dst_port)) and T.compatible(kind, port.type)
                    ),
                    None,
                )
                if source is not None:
                    replacement[port.name] = source
        for edge in [e for e in result.edges if e.src == node.id]:
            result.edges.remove(edge)
            passed = replacement.get(edge.src_port)
            if passed is not None:
                result.edges.append(Edge(passed.src, passed.src_port, edge.dst, edge.dst_port))
            else:
                why = (
                    "is muted"
                    if node.mode == "mute"
                    else "is bypassed and has no input of that type to pass on"
                )
                message = f"comes from '{node.id}.{edge.src_port}', but node '{node.id}' {why}"
                problems.append(Problem(edge.dst, edge.dst_port, message, ProblemCode.INPUT_REMOVED))
        result.edges = [e for e in result.edges if e.dst != node.id]
        del result.nodes[node.id]
    return result, owned(problems, graph.origin)


def owned(problems: list[Problem], origin: dict[str, str]) -> list[Problem]:
    """Problems of a subgraph's inner nodes said on the instance the user sees (naming the inner node)."""
    if not origin:
        return problems
    return [
        Problem(
            origin[p.node], p.where, f"inside, {p.node.split(subgraphs.SEPARATOR, 1)[1]}: {p.message}", p.code
        )
        if p.node in origin
        else p
        for p in problems
    ]


def topological_order(graph: Graph, index: Index | None = None) -> list[str] | None:
    """Node ids in dependency order (ties keep file order), or None when there is a cycle."""
    index = index or Index(graph)
    waiting = {node_id: len(edges) for node_id, edges in index.incoming.items()}
    ready = [node_id for node_id in graph.nodes if waiting[node_id] == 0]
    ready.reverse()
    order: list[str] = []
    while ready:
        current = ready.pop()
        order.append(current)
        for child in reversed(index.children[current]):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return order if len(order) == len(graph.nodes) else None


def ancestors(index: Index, targets: Iterable[str]) -> set[str]:
    """`targets` and every node they depend on."""
    seen: set[str] = set()
    stack = list(targets)
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(edge.src for edge in index.incoming.get(current, {}).values())
    return seen


def default_targets(graph: Graph, registry: Registry) -> list[str]:
    """The output nodes (Save, Preview, ...): what a plain run produces."""
    return [n.id for n in graph if (spec := registry.get(n.type)) is not None and spec.output]


def resolved_params(spec: NodeSpec, params: dict[str, Any], linked: Iterable[str]) -> dict[str, Any]:
    """Every param of `spec` that is not fed by a link: the node's value, else the default."""
    skip = set(linked)
    return {p.name: p.normalise(params.get(p.name, p.default)) for p in spec.params if p.name not in skip}


def param_values(
    spec: NodeSpec, node_id: str, params: dict[str, Any], linked: Iterable[str], resolver: FileResolver
) -> tuple[dict[str, Any], list[Problem]]:
    """The values a run function gets for its params (file params as absolute paths), and problems."""
    values = resolved_params(spec, params, linked)
    problems: list[Problem] = []
    for name, value in values.items():
        param = spec.param(name)
        problem = param.check(value)
        if problem:
            problems.append(Problem(node_id, name, problem, problem.code))
        elif param.reads_file:
            try:
                values[name] = str(resolver.resolve(param.path or "", value))
            except FileProblem as error:
                problems.append(Problem(node_id, name, str(error), ProblemCode.FILE_NOT_FOUND))
    return values, problems


def extra_files(
    spec: NodeSpec, params: dict[str, Any], resolver: FileResolver
) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """The files a node reads beyond its path params (`spec.reads`), by "param:name", and (param, why)
    for each one that cannot be found."""
    found: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []
    if spec.reads is None:
        return found, missing
    try:
        refs = list(spec.reads(params))
    except Exception as error:  # as for validate hooks: a problem on the node, never a crash
        return found, [
            (next(iter(params), ""), f"could not list its files ({type(error).__name__}: {error})")
        ]
    for ref in refs:
        try:
            found[f"{ref.param}:{ref.names[0]}"] = resolver.resolve_first(ref.kind, ref.names)
        except FileProblem as error:
            missing.append((ref.param, str(error)))
    return found, missing


def validate(
    graph: Graph,
    registry: Registry,
    resolver: FileResolver | None = None,
    only: set[str] | None = None,
) -> list[Problem]:
    """Every problem of `graph` (restricted to the nodes in `only` when given), all at once; subgraph
    instances are checked as their inner nodes, and their problems said on the instance."""
    resolver = resolver or FileResolver()
    graph, unknown = subgraphs.flatten(graph)
    problems = [Problem(node, None, why, ProblemCode.UNKNOWN_NODE_TYPE) for node, why in unknown]
    index = Index(graph)
    order = topological_order(graph, index)
    if order is None:
        cycle = nx.find_cycle(nx.DiGraph([(e.src, e.dst) for e in graph.edges]))
        loop = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
        problems.append(Problem(cycle[0][0], None, f"the graph has a cycle: {loop}", ProblemCode.CYCLE))
        order = list(graph.nodes)
    families: dict[str, str | None] = {}
    orphans = {n.id for n in graph if subgraphs.is_instance(n)}  # left unflattened: `unknown` said why
    for node_id in order:
        node = graph.nodes[node_id]
        spec = registry.get(node.type)
        check = only is None or node_id in only
        if spec is None or node_id in orphans:
            families[node_id] = None
            if check and node_id not in orphans:
                problems.append(Problem(node_id, None, _unknown_type(node), ProblemCode.UNKNOWN_NODE_TYPE))
            continue
        incoming = index.incoming[node_id]
        input_families = {name: families.get(edge.src) for name, edge in incoming.items()}
        if check:
            problems.extend(
                _node_problems(graph, registry, resolver, node_id, spec, incoming, input_families)
            )
        families[node_id] = _family(spec, resolved_params(spec, node.params, incoming), input_families)
    return owned(problems, graph.origin)


COMFYUI_PREFIX = "comfyui."  # a node kept as a ComfyUI workflow had it (app/interop/comfyui)


def _unknown_type(node: Any) -> str:
    if node.type.startswith(COMFYUI_PREFIX):
        which = "a core node not in Nodeloom yet" if node.params.get("core") else "custom"
        return (
            f"ComfyUI node {node.type[len(COMFYUI_PREFIX) :]} ({which}) is not available here (its inputs and "
            "widget values are kept, and exporting to ComfyUI writes it back)"
        )
    return f"unknown node type '{node.type}' (its data is kept; install the node family or remove the node)"


def _node_problems(graph, registry, resolver, node_id, spec, incoming, input_families) -> list[Problem]:
    node = graph.nodes[node_id]
    found: list[Problem] = []
    if node.version > spec.version:
        found.append(
            Problem(
                node_id,
                None,
                f"saved by a newer Nodeloom ({spec.type} v{node.version}; this one knows v{spec.version})",
                ProblemCode.NEWER_VERSION,
            )
        )
    for name in node.params:
        if spec.param(name) is None:
            found.append(Problem(node_id, name, f"unknown param for {spec.title}", ProblemCode.UNKNOWN_PARAM))
    for port in spec.inputs:
        if not port.optional and port.name not in incoming:
            message = f"required input ({port.type}) is not connected"
            found.append(Problem(node_id, port.name, message, ProblemCode.REQUIRED_INPUT_MISSING))
    for edge in incoming.values():
        found.extend(_edge_problems(graph, registry, spec, edge))
    values, param_problems = param_values(spec, node_id, node.params, incoming, resolver)
    found.extend(param_problems)
    if not param_problems:
        missing = extra_files(spec, values, resolver)[1]
        found.extend(Problem(node_id, name, why, ProblemCode.FILE_NOT_FOUND) for name, why in missing)
    try:
        T.inputs_agree(_typed(spec, input_families))
    except ValueError as error:
        detail = ", ".join(f"{name}: {fam}" for name, fam in sorted(input_families.items()) if fam)
        found.append(Problem(node_id, None, f"{error} ({detail})", ProblemCode.FAMILY_MISMATCH))
    if spec.validate is not None and not found:
        try:
            texts = list(spec.validate(values, input_families))
        except Exception as error:  # a check that crashes on odd files must not break validation
            texts = [f"could not be checked ({type(error).__name__}: {error})"]
        found.extend(Problem(node_id, None, text) for text in texts)
    return found


def _edge_problems(graph: Graph, registry: Registry, spec: NodeSpec, edge: Edge) -> list[Problem]:
    dst_type = spec.input_type(edge.dst_port)
    if dst_type is None:
        return [
            Problem(
                edge.dst,
                edge.dst_port,
                f"{spec.title} has no input '{edge.dst_port}' (link from {edge.src}.{edge.src_port})",
                ProblemCode.UNKNOWN_INPUT,
            )
        ]
    src_spec = registry.get(graph.nodes[edge.src].type)
    if src_spec is None:
        return []  # the unknown source node is reported on its own
    src_port = src_spec.output_port(edge.src_port)
    if src_port is None:
        return [
            Problem(
                edge.dst,
                edge.dst_port,
                f"linked from '{edge.src}.{edge.src_port}', which is not an output of {src_spec.title}",
                ProblemCode.NOT_AN_OUTPUT,
            )
        ]
    if not T.compatible(src_port.type, dst_type):
        return [
            Problem(
                edge.dst,
                edge.dst_port,
                f"takes {dst_type} but '{edge.src}.{edge.src_port}' gives {src_port.type}",
                ProblemCode.TYPE_MISMATCH,
            )
        ]
    return []


def _typed(spec: NodeSpec, input_families: dict[str, str | None]) -> list[tuple[str | None, str | None]]:
    return [(spec.input_type(name), family) for name, family in input_families.items()]


def _family(spec: NodeSpec, params: dict[str, Any], input_families: dict[str, str | None]) -> str | None:
    try:
        if spec.family is not None:
            return spec.family(params, input_families)
        return T.inputs_agree(_typed(spec, input_families))
    except Exception:  # a family hook must never break validation; the mismatch is reported elsewhere
        return None
