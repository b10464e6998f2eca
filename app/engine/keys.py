"""Cache keys: a Merkle hash per node, computed in one pass in dependency order.

key(node) = sha256(type, type version, canonical params, [(input, upstream key, upstream port)],
                   identities of files the node reads (a model's content id, an input's path, size and
                   mtime), nonce if volatile)

Keys never contain node ids, so identical chains share results and survive renaming and copy/paste.
A change anywhere upstream changes every key downstream, except across an output that declares what it
`uses`: downstream of it sees a key of just those inputs and params (the output's port key), so Load
LoRA's `strength_clip` re-runs Text Encode but not a Sampler fed only through MODEL. The parts are kept
so the editor can say why a node will re-run. Never import torch or Qt here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from app.engine.plan import Index, extra_files, resolved_params
from app.files import FileResolver
from app.graph.model import Graph
from app.registry import Registry


@dataclass(frozen=True)
class KeyParts:
    """What a node's key is made of, for explaining a re-run."""

    type: str
    version: int
    params: dict[str, Any]
    inputs: dict[str, tuple[str, str]]  # input name -> (upstream key, upstream port)
    files: dict[str, Any]
    nonce: str

    def digest(self) -> str:
        text = json.dumps(
            [self.type, self.version, self.params, sorted(self.inputs.items()), self.files, self.nonce],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=repr,
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compute_keys(
    graph: Graph,
    registry: Registry,
    order: list[str],
    resolver: FileResolver,
    nonce: str = "",
    index: Index | None = None,
) -> tuple[dict[str, str], dict[str, KeyParts]]:
    """Keys (and their parts) for the nodes in `order`, which must be dependency-ordered and valid."""
    index = index or Index(graph)
    keys: dict[str, str] = {}
    parts: dict[str, KeyParts] = {}
    port_keys: dict[tuple[str, str], str] = {}  # (node, output) -> the key downstream nodes see
    for node_id in order:
        node = graph.nodes[node_id]
        spec = registry.get(node.type)
        assert spec is not None, f"node {node_id} has no spec; validate before keying"
        incoming = index.incoming[node_id]
        params = resolved_params(spec, node.params, incoming)
        paths = resolved_file_params(spec, params, resolver)
        files: dict[str, Any] = {name: resolver.identity(path) for name, path in paths.items()}
        as_run = {**params, **{name: str(path) for name, path in paths.items()}}
        for name, path in extra_files(spec, as_run, resolver)[0].items():
            files[name] = resolver.identity(path)
        part = KeyParts(
            type=spec.type,
            version=spec.version,
            params=params,
            inputs={
                name: (port_keys.get((edge.src, edge.src_port), keys[edge.src]), edge.src_port)
                for name, edge in incoming.items()
            },
            files=files,
            nonce=nonce if spec.volatile else "",
        )
        parts[node_id] = part
        keys[node_id] = part.digest()
        for port in spec.outputs:
            if port.uses is not None:
                port_keys[(node_id, port.name)] = _port_key(part, port.name, set(port.uses))
    return keys, parts


def resolved_file_params(spec, params: dict[str, Any], resolver: FileResolver) -> dict[str, Any]:
    """The absolute paths of a node's file params (as its run function gets them)."""
    return {
        name: resolver.resolve(param.path or "", value)
        for name, value in params.items()
        if (param := spec.param(name)) is not None and param.reads_file
    }


def _port_key(part: KeyParts, port: str, uses: set[str]) -> str:
    """The key of one output made only of the params, inputs and files it uses."""
    narrowed = KeyParts(
        type=f"{part.type}.{port}",
        version=part.version,
        params={k: v for k, v in part.params.items() if k in uses},
        inputs={k: v for k, v in part.inputs.items() if k in uses},
        files={k: v for k, v in part.files.items() if k.split(":", 1)[0] in uses},
        nonce=part.nonce,
    )
    return narrowed.digest()


def explain(old: KeyParts | None, new: KeyParts, upstream: dict[str, str] | None = None) -> str:
    """A short sentence saying why a node whose key changed will run again."""
    if old is None:
        return "never ran"
    if new.nonce:
        return "volatile: runs every time"
    if (old.type, old.version) != (new.type, new.version):
        return f"node type changed ({old.type} v{old.version} -> {new.type} v{new.version})"
    changed = sorted(k for k in set(old.params) | set(new.params) if old.params.get(k) != new.params.get(k))
    if changed:
        return "param changed: " + ", ".join(
            f"{k} {old.params.get(k)!r} -> {new.params.get(k)!r}" for k in changed
        )
    files = sorted(k for k in set(old.files) | set(new.files) if old.files.get(k) != new.files.get(k))
    if files:
        return "file changed: " + ", ".join(files)
    inputs = sorted(k for k in set(old.inputs) | set(new.inputs) if old.inputs.get(k) != new.inputs.get(k))
    if inputs:
        names = [f"{k} (from {upstream[k]})" if upstream and k in upstream else k for k in inputs]
        return "input changed: " + ", ".join(names)
    return "not in the cache"
