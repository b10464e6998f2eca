"""ComfyUI workflow files read into one plain shape: nodes with their links, whatever the format.

- UI format (what ComfyUI's Save writes, schema 0.4 and 1): `nodes` with positional `widgets_values`,
  `links` as arrays `[id, origin, origin_slot, target, target_slot, type]` (0.4) or objects (1), `groups`,
  and in schema 1 `definitions.subgraphs`, expanded here: an instance's inner nodes get the id
  `<instance>:<inner>` (ComfyUI's execution ids), links into and out of the instance are joined to the inner
  nodes, and the values of instance inputs that are widgets (the instance's `widgets_values`, in the order of
  those inputs) go into the inner inputs they feed; promoted widgets (`proxyWidgets`) mirror inner values.
- API format (what a ComfyUI server runs; also the `prompt` chunk of its PNGs): `{id: {class_type,
  inputs}}`, named inputs, links as `[node_id, slot]`.
- PNGs made by ComfyUI: the `workflow` text chunk (UI format, preferred: it has the layout), else `prompt`.
Reroute nodes are dissolved (their links joined through); modes 2 and 4 are mute and bypass.
Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.graph import pngmeta

MODES = {0: "normal", 1: "normal", 2: "mute", 4: "bypass"}  # 1 = "on event": runs like normal


class WorkflowProblem(ValueError):
    """Not a ComfyUI workflow this reader understands; the message says what is wrong."""


@dataclass
class CNode:
    """One ComfyUI node: its widget values (positional, UI format) or named inputs (API format), its
    links (input name -> (source id, source slot)), and what the editor needs (position, size, ...)."""

    id: str
    type: str
    widgets: list[Any] = field(default_factory=list)
    named: dict[str, Any] = field(default_factory=dict)  # API format: every non-link input by name
    links: dict[str, tuple[str, int]] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # UI: input slot names, in order
    widget_inputs: list[str] = field(default_factory=list)  # UI: the input slots that are widgets, in order
    outputs: list[str] = field(default_factory=list)  # UI: output slot names, in order
    pos: tuple[float, float] | None = None
    size: tuple[float, float] | None = None
    title: str = ""
    color: str = ""
    mode: str = "normal"


@dataclass
class Workflow:
    nodes: dict[str, CNode]
    groups: list[dict[str, Any]] = field(default_factory=list)
    format: str = ""  # "ui 0.4", "ui 1", "api"


def kind(data: Any) -> str | None:
    """ "ui" or "api" for ComfyUI workflow data, None for anything else (a Nodeloom graph)."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("nodes"), list) and ("links" in data or "version" in data):
        return "ui"
    values = list(data.values())
    if values and all(isinstance(v, dict) and "class_type" in v for v in values):
        return "api"
    return None


def from_png(raw: bytes) -> Any | None:
    """The workflow a ComfyUI PNG carries (UI format first), parsed JSON; None when it has none."""
    import json

    texts = pngmeta.read_text(raw, keys=("workflow", "prompt"))
    for key in ("workflow", "prompt"):
        if key in texts:
            try:
                return json.loads(texts[key])
            except ValueError:
                continue
    return None


def read(data: Any) -> Workflow:
    """A Workflow from parsed ComfyUI JSON (either format)."""
    found = kind(data)
    if found == "api":
        return _read_api(data)
    if found == "ui":
        return _read_ui(data)
    raise WorkflowProblem(
        "not a ComfyUI workflow (neither the UI format's nodes and links nor API-format nodes)"
    )


def _read_api(data: dict[str, Any]) -> Workflow:
    nodes = {}
    for node_id, entry in data.items():
        node = CNode(
            str(node_id), str(entry["class_type"]), title=str((entry.get("_meta") or {}).get("title", ""))
        )
        for name, value in (entry.get("inputs") or {}).items():
            if _is_link(value):
                node.links[name] = (str(value[0]), int(value[1]))
            else:
                node.named[name] = value
        nodes[node.id] = node
    return _dissolve_reroutes(Workflow(nodes, format="api"))


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _link_table(links: Any) -> dict[int, tuple[str, int, str, int]]:
    """link id -> (origin, origin slot, target, target slot), from arrays (0.4) or objects (1)."""
    table = {}
    for link in links or []:
        if isinstance(link, list) and len(link) >= 5:
            table[int(link[0])] = (str(link[1]), int(link[2]), str(link[3]), int(link[4]))
        elif isinstance(link, dict):
            table[int(link["id"])] = (
                str(link["origin_id"]),
                int(link["origin_slot"]),
                str(link["target_id"]),
                int(link["target_slot"]),
            )
    return table


def _read_ui(data: dict[str, Any]) -> Workflow:
    version = data.get("version", 0.4)
    subgraphs = {s["id"]: s for s in (data.get("definitions") or {}).get("subgraphs", []) if "id" in s}
    nodes = _ui_nodes(data.get("nodes", []), _link_table(data.get("links")))
    groups = [g for g in data.get("groups", []) if isinstance(g, dict)]
    workflow = Workflow(nodes, groups, f"ui {version}")
    _expand_subgraphs(workflow, subgraphs)
    _dissolve_primitives(workflow)
    return _dissolve_reroutes(workflow)


def _dissolve_primitives(workflow: Workflow) -> None:
    """The frontend's PrimitiveNode holds a widget value for the inputs it is linked to: that value goes
    into those inputs (as the API format has it) and the node goes."""
    primitives = {n.id: n for n in workflow.nodes.values() if n.type == "PrimitiveNode"}
    for node in workflow.nodes.values():
        for name, (origin, _) in list(node.links.items()):
            if origin in primitives:
                values = primitives[origin].widgets
                if values:
                    node.named[name] = values[0]
                del node.links[name]
    for node_id in primitives:
        del workflow.nodes[node_id]


def _ui_nodes(
    entries: list[Any], table: dict[int, tuple[str, int, str, int]], prefix: str = ""
) -> dict[str, CNode]:
    nodes: dict[str, CNode] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "id" not in entry or "type" not in entry:
            raise WorkflowProblem(f"a node without id or type: {str(entry)[:80]}")
        widgets = entry.get("widgets_values", [])
        named = entry.get("widgets_values_named")  # newer frontends also write the values by name
        node = CNode(
            prefix + str(entry["id"]),
            str(entry["type"]),
            widgets=list(widgets.values()) if isinstance(widgets, dict) else list(widgets or []),
            named=dict(named)
            if isinstance(named, dict)
            else dict(widgets)
            if isinstance(widgets, dict)
            else {},
            inputs=[str(i.get("name", "")) for i in entry.get("inputs") or []],
            widget_inputs=[str(i.get("name", "")) for i in entry.get("inputs") or [] if i.get("widget")],
            outputs=[str(o.get("name", "")) for o in entry.get("outputs") or []],
            pos=_pair(entry.get("pos")),
            size=_pair(entry.get("size")),
            title=str(entry.get("title") or ""),
            color=str(entry.get("bgcolor") or entry.get("color") or ""),
            mode=MODES.get(entry.get("mode", 0), "normal"),
        )
        for slot in entry.get("inputs") or []:
            link = slot.get("link")
            if link is not None and int(link) in table:
                origin, origin_slot, _, _ = table[int(link)]
                node.links[str(slot.get("name", ""))] = (prefix + origin, origin_slot)
        nodes[node.id] = node
    return nodes


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, dict) and "0" in value:  # old files store positions as {"0": x, "1": y}
        value = [value["0"], value.get("1", 0)]
    if (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(v, int | float) for v in value[:2])
    ):
        return float(value[0]), float(value[1])
    return None


def _expand_subgraphs(workflow: Workflow, subgraphs: dict[str, Any], depth: int = 0) -> None:
    """Replace each subgraph instance by its inner nodes (recursively, nested definitions too)."""
    if depth > 16:
        raise WorkflowProblem("subgraphs nested more than 16 deep")
    for instance in [n for n in workflow.nodes.values() if n.type in subgraphs]:
        definition = subgraphs[instance.type]
        prefix = f"{instance.id}:"
        table = _link_table(definition.get("links"))
        inner = _ui_nodes(definition.get("nodes", []), table, prefix)
        input_node, output_node = (
            str(definition.get("inputNode", {}).get("id", -10)),
            str(definition.get("outputNode", {}).get("id", -20)),
        )
        # an instance input that is a widget holds its value in the instance's widgets_values
        values = dict(zip(instance.widget_inputs, instance.widgets, strict=False))
        for node in inner.values():  # links from the subgraph's input node: to what feeds the instance
            for name, (origin, slot) in list(node.links.items()):
                if origin == prefix + input_node:
                    outer_name = instance.inputs[slot] if slot < len(instance.inputs) else ""
                    outer = instance.links.get(outer_name)
                    if outer is None:
                        del node.links[name]
                        if outer_name in values:
                            node.named[name] = values[outer_name]
                    else:
                        node.links[name] = outer
        exits = {}  # instance output slot -> the inner (node, slot) feeding the subgraph's output node
        for _, (origin, origin_slot, target, target_slot) in table.items():
            if target == output_node:
                exits[target_slot] = (prefix + origin, origin_slot)
        del workflow.nodes[instance.id]
        workflow.nodes.update({k: v for k, v in inner.items()})
        for node in workflow.nodes.values():
            for name, (origin, slot) in list(node.links.items()):
                if origin == instance.id:
                    if slot in exits:
                        node.links[name] = exits[slot]
                    else:
                        del node.links[name]
    if any(n.type in subgraphs for n in workflow.nodes.values()):
        _expand_subgraphs(workflow, subgraphs, depth + 1)


def _dissolve_reroutes(workflow: Workflow) -> Workflow:
    """Links through Reroute nodes go straight to the node behind them; the Reroutes go."""
    reroutes = {n.id for n in workflow.nodes.values() if n.type == "Reroute"}

    def source(link: tuple[str, int], seen: int = 0) -> tuple[str, int] | None:
        if link[0] not in reroutes:
            return link
        feeding = next(iter(workflow.nodes[link[0]].links.values()), None)
        return source(feeding, seen + 1) if feeding is not None and seen < 64 else None

    for node in workflow.nodes.values():
        for name, link in list(node.links.items()):
            resolved = source(link)
            if resolved is None:
                del node.links[name]
            else:
                node.links[name] = resolved
    for node_id in reroutes:
        del workflow.nodes[node_id]
    return workflow
