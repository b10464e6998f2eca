"""Copy and paste of sub-graphs: the clipboard payload is graph-file shaped JSON with a marker key.

`copy_nodes` takes the chosen nodes, the links among them and their layout; the Paste command
(app.graph.commands) adds them back under new ids. Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from app.graph import serialize
from app.graph.model import Graph
from app.graph.ops import reroute_key

CLIP_KEY = "nodeloom_clip"
INCOMING_KEY = "incoming"  # links from outside the copied nodes into them: [src, src_port, dst, dst_port]


def copy_nodes(graph: Graph, node_ids: Iterable[str]) -> dict[str, Any]:
    """A clipboard payload: the nodes, the links among them and their layout (graph-file shaped)."""
    chosen = [n for n in dict.fromkeys(node_ids) if n in graph.nodes]
    part = Graph()
    for node_id in chosen:
        part.add_node(copy.deepcopy(graph.nodes[node_id]))
    inside = set(chosen)
    part.edges = [e for e in graph.edges if e.src in inside and e.dst in inside]
    for key in ("positions", "colours", "sockets"):
        section = {n: v for n, v in graph.layout.get(key, {}).items() if n in inside}
        if section:
            part.layout[key] = copy.deepcopy(section)
    kept = {reroute_key(e.dst, e.dst_port) for e in part.edges}
    reroutes = {k: v for k, v in graph.layout.get("reroutes", {}).items() if k in kept}
    if reroutes:
        part.layout["reroutes"] = copy.deepcopy(reroutes)
    incoming = [
        [e.src, e.src_port, e.dst, e.dst_port] for e in graph.edges if e.dst in inside and e.src not in inside
    ]
    return {CLIP_KEY: 1, **serialize.to_dict(part), INCOMING_KEY: incoming}


def incoming_links(clip: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The links from nodes outside the copy into it (Ctrl+Shift+V pastes them too), well-formed ones only."""
    links = clip.get(INCOMING_KEY, [])
    if not isinstance(links, list):
        return []
    return [
        tuple(link)
        for link in links
        if isinstance(link, list) and len(link) == 4 and all(isinstance(x, str) for x in link)
    ]


def is_clip(data: Any) -> bool:
    return isinstance(data, dict) and data.get(CLIP_KEY) == 1
