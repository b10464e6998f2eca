"""A ComfyUI workflow (app/interop/comfyui/workflow.py) as a Nodeloom graph, with a report of what mapped,
what was approximated and what became a placeholder.

Each ComfyUI node type in CONVERTERS (app/interop/comfyui/convert.py) becomes one or more Nodeloom nodes
and says which of their ports its inputs and output slots are. Some nodes only pass a value on while
changing a setting of what they feed (CLIPSetLastLayer: Text Encode's clip skip; ModelSamplingSD3: the
Scheduler's shift; FluxGuidance: the Guidance scale): they become aliases that carry that setting to the
node at the end of the link. Every other type becomes a placeholder node `comfyui.<Type>` holding its
widget values and inputs, so nothing is lost and export writes it back; validation names it.

Ids: ComfyUI's numeric ids are not Nodeloom ids (those start with a letter), so a node gets
`<type>_<id>` ("ksampler_3"; expanded parts add a suffix: "ksampler_3_schedule"); the ComfyUI id of every
node is kept in `meta.comfyui.ids`. Positions, sizes, titles, colours and groups (as frames) go to the layout.
Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.engine.plan import COMFYUI_PREFIX as PLACEHOLDER  # type prefix of a node kept as ComfyUI had it
from app.graph.model import Edge, Graph, Node
from app.interop.comfyui.widgets import WIDGETS
from app.interop.comfyui.workflow import CNode, Workflow


@dataclass
class Report:
    """What an import did, for `nodeloom import` and the editor's status line."""

    mapped: dict[str, int] = field(default_factory=dict)  # ComfyUI type -> count
    approximated: list[str] = field(default_factory=list)  # one sentence each, naming the node
    placeholders: list[str] = field(default_factory=list)  # "Type (id)"
    models: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) the graph loads

    def summary(self) -> list[str]:
        """Counts, for a status line."""
        return [
            f"{sum(self.mapped.values())} nodes mapped",
            f"{len(self.approximated)} approximations",
            f"{len(self.placeholders)} placeholders",
        ]

    def lines(self) -> list[str]:
        out = [f"mapped: {', '.join(f'{t} x{n}' for t, n in sorted(self.mapped.items())) or 'nothing'}"]
        out += [f"approximated: {text}" for text in self.approximated]
        if self.placeholders:
            out.append(f"kept as placeholders (not available here): {', '.join(self.placeholders)}")
        return out


@dataclass
class Alias:
    """An output slot that is the value feeding one of the node's inputs, carrying settings along."""

    source_input: str
    carry: dict[str, Any]


class Importer:
    """Builds the graph; converters call `add`, `input`, `output`, `alias`, `value`, `approx`."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.graph = Graph()
        self.report = Report()
        self.ids: dict[str, str] = {}  # our node id -> ComfyUI id
        self.inputs: list[tuple[str, str, str, str]] = []  # (comfy node, comfy input, our node, our port)
        self.outputs: dict[tuple[str, int], tuple[str, str] | Alias] = {}
        self.carried: dict[tuple[str, str], dict[str, Any]] = {}  # (our node, port) -> settings that came
        self.edges: list[tuple[str, str, str, str]] = []  # links between the nodes one ComfyUI node became
        self.borrowed: list[tuple[CNode, str, str, str]] = []  # (ComfyUI node, its input, our node, port)
        self.sets: dict[
            tuple[str, str], dict[str, Any]
        ] = {}  # our output -> settings it carries (FluxGuidance)
        self.needs_vae: list[str] = []  # our empty latents, to be linked to the graph's VAE
        self.trios: list[tuple[str, str, str]] = []  # (sampler, scheduler, guidance) of each ComfyUI sampler

    # -- for converters ---------------------------------------------------------------------------------
    def our_id(self, cnode: CNode, suffix: str = "") -> str:
        base = re.sub(r"[^A-Za-z0-9_]+", "_", cnode.type).strip("_").lower() or "node"
        if not base[0].isalpha():
            base = f"n_{base}"
        name = f"{base}_{cnode.id.replace(':', '_')}" + (f"_{suffix}" if suffix else "")
        return self.graph.new_id(name) if name in self.graph.nodes else name

    def add(
        self,
        cnode: CNode,
        type_id: str,
        params: dict[str, Any],
        suffix: str = "",
        offset=(0.0, 0.0),
        title="",
    ) -> str:
        node_id = self.our_id(cnode, suffix)
        self.graph.add_node(
            Node(node_id, type_id, params=params, mode=cnode.mode, title=title or cnode.title)
        )
        self.ids[node_id] = cnode.id
        if cnode.pos is not None:
            self.graph.set_layout_item(
                "positions", node_id, [round(cnode.pos[0] + offset[0]), round(cnode.pos[1] + offset[1])]
            )
        if cnode.size is not None and not suffix:  # kept for export; our nodes size themselves
            self.graph.set_layout_item("sizes", node_id, [round(v) for v in cnode.size])
        if cnode.color:
            self.graph.set_layout_item("colours", node_id, cnode.color)
        return node_id

    def input(self, cnode: CNode, name: str, node_id: str, port: str) -> None:
        """Our `node_id.port` takes what feeds ComfyUI input `name` (if anything does)."""
        self.inputs.append((cnode.id, name, node_id, port))

    def output(self, cnode: CNode, slot: int, node_id: str, port: str) -> None:
        self.outputs[(cnode.id, slot)] = (node_id, port)

    def alias(self, cnode: CNode, slot: int, source_input: str, **carry: Any) -> None:
        self.outputs[(cnode.id, slot)] = Alias(source_input, carry)

    def value(self, cnode: CNode, name: str, default: Any = None) -> Any:
        """A widget's value: by name (API format, promoted values), else by its place in widgets_values."""
        if name in cnode.named:
            return cnode.named[name]
        order = WIDGETS.get(cnode.type, ())
        if name in order:
            index = order.index(name)
            if index < len(cnode.widgets):
                return cnode.widgets[index]
        return default

    def approx(self, cnode: CNode, text: str) -> None:
        self.report.approximated.append(f"{cnode.type} {cnode.id}: {text}")

    def placeholder(self, cnode: CNode) -> None:
        """A node kept as ComfyUI had it: its widget values and inputs, linked by their own names."""
        node_id = self.add(
            cnode,
            PLACEHOLDER + cnode.type,
            {
                "comfyui_id": cnode.id,
                "widgets_values": cnode.widgets,
                "inputs": cnode.named,
                "core": cnode.type in WIDGETS,
            },
        )
        for name in cnode.links:
            self.input(cnode, name, node_id, name)
        slots = max([s for (n, s) in self._used_slots() if n == cnode.id] + [len(cnode.outputs) - 1, -1]) + 1
        for slot in range(slots):
            name = cnode.outputs[slot] if slot < len(cnode.outputs) and cnode.outputs[slot] else f"out{slot}"
            self.output(cnode, slot, node_id, name)
        self.report.placeholders.append(f"{cnode.type} ({cnode.id})")

    def _used_slots(self) -> set[tuple[str, int]]:
        return {link for n in self.workflow.nodes.values() for link in n.links.values()}

    # -- after every node -------------------------------------------------------------------------------
    def source(self, link: tuple[str, int], carry: dict[str, Any], depth: int = 0) -> tuple[str, str] | None:
        """Our (node, port) a ComfyUI link comes from, through aliases (collecting what they carry)."""
        target = self.outputs.get((link[0], link[1]))
        if isinstance(target, Alias):
            feeding = self.workflow.nodes[link[0]].links.get(target.source_input)
            for key, value in target.carry.items():
                carry.setdefault(key, value)  # the alias nearest the destination wins
            return self.source(feeding, carry, depth + 1) if feeding is not None and depth < 64 else None
        return target

    def connect(self) -> None:
        for src, src_port, dst, dst_port in self.edges:
            self.graph.connect(Edge(src, src_port, dst, dst_port))
        wanted = list(self.inputs) + [(n.id, name, node_id, port) for n, name, node_id, port in self.borrowed]
        for comfy_id, name, node_id, port in wanted:
            link = self.workflow.nodes[comfy_id].links.get(name)
            if link is None:
                continue
            carry: dict[str, Any] = {}
            found = self.source(link, carry)
            if found is None:
                continue
            if self.graph.input_edge(node_id, port) is None:
                self.graph.connect(Edge(found[0], found[1], node_id, port))
            carry = {**self.sets.get(found, {}), **carry}
            if carry:
                self.carried.setdefault((node_id, port), {}).update(carry)

    def layout(self) -> None:
        """Groups as frames, the ComfyUI ids in meta."""
        for index, group in enumerate(self.workflow.groups):
            box = group.get("bounding") or [0, 0, 200, 100]
            self.graph.set_layout_item(
                "frames",
                f"group_{index + 1}",
                {
                    "title": str(group.get("title", "Group")),
                    "colour": str(group.get("color") or "#5c6bc0"),
                    "rect": [float(v) for v in box[:4]],
                },
            )
        self.graph.meta["comfyui"] = {"format": self.workflow.format, "ids": dict(self.ids)}
