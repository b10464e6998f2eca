"""Graph files, format v1: JSON in, JSON out, never code.

    {"schema_version": 1,
     "meta": {...},                                   optional, free-form
     "nodes": {"<id>": {"type": "...", "version": 1, "title": "...", "mode": "bypass", "params": {...}}},
     "edges": [{"from": ["<node>", "<output>"], "to": ["<node>", "<input>"]}],
     "layout": {...},                                 editor-only: positions, frames, reroutes, colours
     "definitions": {"subgraphs": {...}}}             optional: node groups used as one node (subgraphs.py)

Loading checks the shape, migrates each node whose type has a newer version (`spec.migrate`), and
keeps nodes of unknown types as they are so that validation can name them and nothing is lost.
A graph can also be read from a PNG written by Save Image (text chunk `nodeloom`).
Saving is atomic, and load -> save of a file written by Nodeloom gives the same bytes.

Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from app.files import ASSETS
from app.fsutil import atomic_write_text
from app.graph import pngmeta, subgraphs
from app.graph.model import MODES, Edge, Graph, Node, SpecLookup

SCHEMA_VERSION = 1
PNG_KEY = "nodeloom"
FILE_LIMIT = 256 * 2**20  # a graph JSON is kilobytes; a PNG carrying one, a picture's size
MAX_NAME = 200
_NODE_KEYS = ("type", "version", "title", "mode", "params")


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a node id or port name, or None: text of 1 to 200 characters, without control
    characters or surrounding white space (a trailing newline would make two nodes look the same)."""
    if not isinstance(name, str) or not name:
        return "an id must be non-empty text"
    if len(name) > MAX_NAME:
        return f"an id may be at most {MAX_NAME} characters"
    if name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "an id may not contain control characters or start or end with white space"
    return None


class GraphFileError(ValueError):
    """A graph file that cannot be read; the message names the file and what is wrong."""


def _fail(source: str, message: str) -> GraphFileError:
    return GraphFileError(f"{source}: {message}")


def read_file(path: str | os.PathLike[str], limit: int = FILE_LIMIT) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (GraphFileError otherwise: a FIFO or a
    device would hang or never end, a folder is not a graph)."""
    source = str(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise _fail(source, f"cannot read: {kind}")
        if info.st_size > limit:
            raise _fail(
                source, f"{info.st_size} bytes: larger than the {limit // 2**20} MiB a graph file may be"
            )
        with open(path, "rb") as handle:
            return handle.read(info.st_size + 1)  # (read(limit) would reserve `limit` bytes up front)
    except OSError as error:
        raise _fail(source, f"cannot read ({error.strerror or error})") from None


def load(path: str | os.PathLike[str], specs: SpecLookup | None = None) -> Graph:
    """Read a graph from a .json file or a PNG that carries one."""
    source = str(path)
    raw = read_file(path)
    if len(raw) > FILE_LIMIT:
        raise _fail(source, f"larger than the {FILE_LIMIT // 2**20} MiB a graph file may be")
    if raw.startswith(pngmeta.SIGNATURE):
        texts = pngmeta.read_text(raw, keys=(PNG_KEY,))
        if PNG_KEY not in texts:
            raise _fail(source, "this PNG carries no Nodeloom graph")
        text = texts[PNG_KEY]
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(source, "not a UTF-8 JSON file") from None
    return loads(text, specs, source=source)


def loads(text: str, specs: SpecLookup | None = None, source: str = "<graph>") -> Graph:
    return from_dict(parse_json(text, source), specs, source=source)


def parse_json(text: str, source: str = "<graph>") -> Any:
    """JSON text as data, refusing what would fail later: duplicate keys (a node silently dropped),
    nesting deeper than Python recurses, numbers of thousands of digits, and lone UTF-16 surrogates
    (valid JSON escapes that no file or PNG can store)."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as error:
        raise _fail(
            source, f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise _fail(source, "invalid JSON: nested too deeply") from None
    except _DuplicateKey as error:
        raise _fail(source, f"invalid JSON: the key {error.args[0]!r} appears twice in one object") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise _fail(source, f"invalid JSON: {error}") from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(
            source, "invalid text: a lone UTF-16 surrogate (\\ud800-\\udfff) cannot be stored"
        ) from None
    except (RecursionError, ValueError) as error:
        raise _fail(source, f"invalid JSON: {error}") from None
    return data


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def from_dict(data: Any, specs: SpecLookup | None = None, source: str = "<graph>") -> Graph:
    """Build a Graph from parsed JSON, checking its shape and migrating old node versions."""
    if not isinstance(data, dict):
        raise _fail(source, "the top level must be a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _fail(source, "missing or invalid 'schema_version'")
    if version > SCHEMA_VERSION:
        raise _fail(source, f"schema_version {version} is newer than this Nodeloom reads ({SCHEMA_VERSION})")
    unknown = set(data) - {"schema_version", "meta", "nodes", "edges", "layout", "definitions"}
    if unknown:
        raise _fail(source, f"unknown top-level keys: {', '.join(sorted(unknown))}")
    nodes = data.get("nodes", {})
    if not isinstance(nodes, dict):
        raise _fail(source, "'nodes' must be an object keyed by node id")
    graph = Graph()
    for key in ("meta", "layout"):
        section = data.get(key, {})
        if not isinstance(section, dict):
            raise _fail(source, f"'{key}' must be an object")
        setattr(graph, key, section)
    for node_id, entry in nodes.items():
        node = _read_node(source, node_id, entry, specs)
        try:
            graph.add_node(node)
        except ValueError as error:
            raise _fail(source, str(error)) from None
    edges = data.get("edges", [])
    if not isinstance(edges, list):
        raise _fail(source, "'edges' must be a list")
    for index, entry in enumerate(edges):
        edge = _read_edge(source, index, entry)
        if edge.src not in graph.nodes or edge.dst not in graph.nodes:
            missing = edge.src if edge.src not in graph.nodes else edge.dst
            raise _fail(source, f"edge {index} ({edge.describe()}) names a missing node {missing!r}")
        if graph.input_edge(edge.dst, edge.dst_port) is not None:
            raise _fail(source, f"edge {index}: input {edge.dst}.{edge.dst_port} is linked twice")
        graph.edges.append(edge)
    graph.definitions = _read_definitions(data.get("definitions", {}), specs, source)
    return graph


def _read_definitions(section: Any, specs: SpecLookup | None, source: str) -> dict[str, Any]:
    """The `definitions` section: subgraphs by name (app/graph/subgraphs.py)."""
    if not isinstance(section, dict) or set(section) - {"subgraphs"}:
        raise _fail(source, "'definitions' must be an object with 'subgraphs'")
    entries = section.get("subgraphs", {})
    if not isinstance(entries, dict):
        raise _fail(source, "'definitions.subgraphs' must be an object keyed by name")
    found = {}
    for name, raw in entries.items():
        problem = name_problem(name)
        if problem or "/" in name:
            raise _fail(source, f"subgraph {name!r}: {problem or 'a name may not contain /'}")
        try:
            found[name] = subgraphs.from_json(name, raw, lambda inner: from_dict(inner, specs, source))
        except subgraphs.SubgraphError as error:
            raise _fail(source, str(error)) from None
    return found


def _read_node(source: str, node_id: Any, entry: Any, specs: SpecLookup | None) -> Node:
    where = f"node {node_id!r}"
    problem = name_problem(node_id)
    if problem:
        raise _fail(source, f"{where}: {problem}")
    if not isinstance(entry, dict):
        raise _fail(source, f"{where} must be an object")
    extra = set(entry) - set(_NODE_KEYS)
    if extra:
        raise _fail(source, f"{where}: unknown keys {', '.join(sorted(extra))}")
    kind = entry.get("type")
    if not isinstance(kind, str) or not kind:
        raise _fail(source, f"{where}: missing 'type'")
    version = entry.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(source, f"{where}: 'version' must be a whole number >= 1")
    params = entry.get("params", {})
    if not isinstance(params, dict):
        raise _fail(source, f"{where}: 'params' must be an object")
    mode = entry.get("mode", "normal")
    if mode not in MODES:
        raise _fail(source, f"{where}: mode {mode!r} is not one of {', '.join(MODES)}")
    title = entry.get("title", "")
    if not isinstance(title, str):
        raise _fail(source, f"{where}: 'title' must be text")
    spec = specs(kind) if specs else None
    if spec is not None and version < spec.version:
        if spec.migrate is None:
            raise _fail(source, f"{where}: {kind} v{version} has no migration to v{spec.version}")
        try:
            params = spec.migrate(dict(params), version)
        except Exception as error:  # a migration that fails is a file problem, reported as such
            raise _fail(
                source, f"{where}: migrating {kind} v{version} -> v{spec.version} failed: {error}"
            ) from None
        version = spec.version
    return Node(id=node_id, type=kind, version=version, params=dict(params), mode=mode, title=title)


def _read_edge(source: str, index: int, entry: Any) -> Edge:
    def end(name: str) -> tuple[str, str]:
        value = entry.get(name) if isinstance(entry, dict) else None
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(part, str) and not name_problem(part) for part in value)
        ):
            raise _fail(source, f"edge {index}: '{name}' must be [node id, port name]")
        return value[0], value[1]

    if not isinstance(entry, dict) or set(entry) != {"from", "to"}:
        raise _fail(source, f"edge {index} must be an object with exactly 'from' and 'to'")
    (src, src_port), (dst, dst_port) = end("from"), end("to")
    return Edge(src, src_port, dst, dst_port)


def to_dict(graph: Graph) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    for node in graph:
        entry: dict[str, Any] = {"type": node.type, "version": node.version}
        if node.title:
            entry["title"] = node.title
        if node.mode != "normal":
            entry["mode"] = node.mode
        entry["params"] = node.params
        nodes[node.id] = entry
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if graph.meta:
        data["meta"] = graph.meta
    data["nodes"] = nodes
    data["edges"] = [{"from": [e.src, e.src_port], "to": [e.dst, e.dst_port]} for e in graph.edges]
    if graph.layout:
        data["layout"] = graph.layout
    if graph.definitions:
        data["definitions"] = {
            "subgraphs": {
                name: subgraphs.to_json(definition, to_dict(definition.graph))
                for name, definition in graph.definitions.items()
            }
        }
    return data


def dumps(graph: Graph) -> str:
    """The canonical text of a graph file (2-space indent, UTF-8, trailing newline)."""
    return json.dumps(to_dict(graph), indent=2, ensure_ascii=False) + "\n"


def templates(specs: SpecLookup | None = None) -> dict[str, Any]:
    """The shipped subgraph templates (assets/subgraphs/<name>.json, one definition each), by name."""
    found = {}
    for path in sorted((ASSETS / "subgraphs").glob("*.json")):
        raw, where = json.loads(path.read_text("utf-8")), str(path)
        found[path.stem] = subgraphs.from_json(
            path.stem, raw, lambda inner, where=where: from_dict(inner, specs, where)
        )
    return found


def save(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a crash mid-save never leaves a half-written graph."""
    return atomic_write_text(path, dumps(graph))
