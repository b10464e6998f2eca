"""Small ComfyUI workflows written by hand, in both formats from one description.

`Flow.add(type, widgets, links)` takes the widget values in the order ComfyUI's node definition lists
them (frontend-only widgets included: a seed's `control_after_generate`, LoadImage's `upload`), read from
ComfyUI's nodes.py / comfy_extras and its frontend, independent of the importer's own table. `ui()` writes
the UI format (positional widgets_values, link arrays, schema 0.4), `api()` the API format (named inputs,
frontend-only widgets left out, links as [id, slot]).
"""

from __future__ import annotations

from typing import Any

FRONTEND_ONLY = ("control_after_generate", "upload")


class Flow:
    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []

    def add(
        self,
        type_: str,
        widgets: dict[str, Any] | None = None,
        links: dict[str, tuple[int, int]] | None = None,
        **extra,
    ) -> int:
        node_id = len(self.nodes) + 1
        self.nodes.append(
            {
                "id": node_id,
                "type": type_,
                "widgets": dict(widgets or {}),
                "links": dict(links or {}),
                **extra,
            }
        )
        return node_id

    def ui(self) -> dict[str, Any]:
        nodes, links = [], []
        for node in self.nodes:
            inputs = []
            for name, (src, slot) in node["links"].items():
                link_id = len(links) + 1
                links.append([link_id, src, slot, node["id"], len(inputs), "*"])
                inputs.append({"name": name, "type": "*", "link": link_id})
            entry = {
                "id": node["id"],
                "type": node["type"],
                "pos": [100.0 * node["id"], 50.0],
                "size": [300, 120],
                "mode": node.get("mode", 0),
                "inputs": inputs,
                "outputs": [],
                "widgets_values": list(node["widgets"].values()),
            }
            if "title" in node:
                entry["title"] = node["title"]
            nodes.append(entry)
        return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
                "groups": [], "version": 0.4}  # fmt: skip

    def api(self) -> dict[str, Any]:
        prompt = {}
        for node in self.nodes:
            inputs = {k: v for k, v in node["widgets"].items() if k not in FRONTEND_ONLY}
            inputs.update({name: [str(src), slot] for name, (src, slot) in node["links"].items()})
            prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
        return prompt
