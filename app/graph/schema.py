"""The JSON Schema of graph files (format v1), published by `nodeloom schema`.

The loader in serialize.py checks the same rules by hand so its errors can name the node and key;
a test checks both agree on every shipped graph and on broken examples.
Pure data: never import Qt or torch here.
"""

from __future__ import annotations

from typing import Any

from app.graph.model import MODES
from app.graph.serialize import SCHEMA_VERSION

_ID = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


def graph_schema(node_types: list[str] | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for a graph file; `node_types` lists known types as a hint."""
    endpoint = {
        "type": "array",
        "prefixItems": [{"type": "string", "minLength": 1}, {"type": "string", "minLength": 1}],
        "minItems": 2,
        "maxItems": 2,
        "description": "[node id, port name]",
    }
    node_type: dict[str, Any] = {"type": "string", "minLength": 1}
    if node_types:
        node_type["examples"] = sorted(node_types)
    nodes = {
        "type": "object",
        "propertyNames": {"pattern": _ID},
        "additionalProperties": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": node_type,
                "version": {"type": "integer", "minimum": 1},
                "title": {"type": "string"},
                "mode": {"enum": list(MODES)},
                "params": {"type": "object", "description": "param values by name"},
            },
        },
    }
    edges = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["from", "to"],
            "additionalProperties": False,
            "properties": {"from": endpoint, "to": endpoint},
        },
    }
    ends = {"type": "array", "items": endpoint, "minItems": 1}
    exposed = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "to"],
            "properties": {"name": {"type": "string"}, "to": ends},
        },
    }
    subgraph = {
        "type": "object",
        "description": "a node group used as one node of type subgraph:<name> (app/graph/subgraphs.py)",
        "properties": {
            "version": {"type": "integer", "minimum": 1},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "nodes": nodes,
            "edges": edges,
            "layout": {"type": "object"},
            "inputs": exposed,
            "params": exposed,
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "from"],
                    "properties": {"name": {"type": "string"}, "from": endpoint},
                },
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://nodeloom.invalid/schema/graph-v1.json",
        "title": "Nodeloom graph",
        "type": "object",
        "required": ["schema_version"],
        "additionalProperties": False,
        "properties": {
            "schema_version": {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION},
            "meta": {"type": "object", "description": "free-form: name, description, author"},
            "nodes": nodes,
            "edges": edges,
            "layout": {
                "type": "object",
                "description": "editor-only: node positions, frames, reroutes, colours; the runner ignores it",
            },
            "definitions": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"subgraphs": {"type": "object", "additionalProperties": subgraph}},
            },
        },
    }
