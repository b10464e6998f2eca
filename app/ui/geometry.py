"""Where things sit on a node: size, port positions and param rows, from its spec and the layout.

Pure Python (no Qt) so the scene, the minimap, frame membership and tests share one answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.graph import types as T
from app.graph.model import Graph, Node
from app.graph.spec import NodeSpec

WIDTH = 220.0
TITLE_H = 26.0
ROW_H = 20.0
PAD = 6.0
PORT_R = 5.5


@dataclass
class Row:
    """One painted row: ports (input left, output right) or a param (label and value)."""

    y: float
    input: str | None = None
    input_type: str | None = None
    output: str | None = None
    output_type: str | None = None
    param: str | None = None


@dataclass
class NodeGeometry:
    width: float
    height: float
    rows: list[Row] = field(default_factory=list)
    inputs: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    outputs: dict[str, tuple[float, float, str]] = field(default_factory=dict)


def node_geometry(graph: Graph, node: Node, spec: NodeSpec | None) -> NodeGeometry:
    """Rows and port positions (relative to the node's top-left) of `node`."""
    if spec is None:
        ins = [(e.dst_port, T.ANY) for e in graph.edges if e.dst == node.id]
        outs = list(dict.fromkeys((e.src_port, T.ANY) for e in graph.edges if e.src == node.id))
        params: list[str] = list(node.params)
        sockets: set[str] = set()
    else:
        ins = [(p.name, p.type) for p in spec.inputs]
        outs = [(p.name, p.type) for p in spec.outputs]
        shown = set(graph.layout.get("sockets", {}).get(node.id, []))
        linked = {e.dst_port for e in graph.edges if e.dst == node.id}
        sockets = {p.name for p in spec.params if p.linkable and (p.name in shown or p.name in linked)}
        applying = {p.name for p in spec.shown_params(node.params)}
        params = [
            p.name for p in spec.params if p.name in applying or p.name in sockets
        ]  # PAG's, only for pag
    geometry = NodeGeometry(WIDTH, 0.0)
    y = TITLE_H + 2.0
    for index in range(max(len(ins), len(outs))):
        row = Row(y)
        if index < len(ins):
            row.input, row.input_type = ins[index]
            geometry.inputs[row.input] = (0.0, y + ROW_H / 2, row.input_type)
        if index < len(outs):
            row.output, row.output_type = outs[index]
            geometry.outputs[row.output] = (WIDTH, y + ROW_H / 2, row.output_type)
        geometry.rows.append(row)
        y += ROW_H
    for name in params:
        row = Row(y, param=name)
        if name in sockets and spec is not None:
            param = spec.param(name)
            row.input, row.input_type = name, param.type if param else T.ANY
            geometry.inputs[name] = (0.0, y + ROW_H / 2, row.input_type)
        geometry.rows.append(row)
        y += ROW_H
    geometry.height = y + PAD
    return geometry


def format_value(value: object) -> str:
    """A short text for a param value painted on the node."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, bool):
        text = "on" if value else "off"
    else:
        text = str(value).replace("\n", " ")
    return text if len(text) <= 22 else text[:21] + "…"
