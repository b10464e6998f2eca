"""A Nodeloom graph as a ComfyUI API-format prompt (`{id: {class_type, inputs, _meta}}`), for a ComfyUI
server to run: the mapped subset of the node set, back to ComfyUI's core types.

Scheduler + Guidance + Sampler become one KSampler where their values allow (a ComfyUI sampler name for the
scheduler, the cfg method, no custom timesteps); a flow model's shift becomes ModelSamplingSD3 in front of
it, and a Flux model's guidance becomes FluxGuidance on the positive prompt with cfg 1 (a model is taken as
Flux when its file or config name says so). Text Encode's clip skip becomes CLIPSetLastLayer. Nodes that
came from ComfyUI keep their ids (meta.comfyui.ids), so import -> export -> import gives the same graph;
placeholders are written back with their type and inputs. What cannot be exported is listed by node.
Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.graph import subgraphs
from app.graph.model import Graph
from app.interop.comfyui.importer import PLACEHOLDER
from app.interop.comfyui.widgets import SAMPLER_NAMES, SCHEDULER_NAMES

SIMPLE = {  # our type -> (ComfyUI type, {their input: our param}, {their input: our input port}, our outputs)
    "model.checkpoint": ("CheckpointLoaderSimple", {"ckpt_name": "checkpoint"}, {}, ("model", "clip", "vae")),
    "model.diffusion_model": ("UNETLoader", {"unet_name": "unet_name"}, {}, ("model",)),
    "model.triple_clip": (
        "TripleCLIPLoader",
        {"clip_name1": "clip_name1", "clip_name2": "clip_name2", "clip_name3": "clip_name3"},
        {},
        ("clip",),
    ),  # fmt: skip
    "model.dual_clip": (
        "DualCLIPLoader",
        {"clip_name1": "clip_name1", "clip_name2": "clip_name2", "type": "type"},
        {},
        ("clip",),
    ),
    "model.vae": ("VAELoader", {"vae_name": "vae_name"}, {}, ("vae",)),
    "model.lora": (
        "LoraLoader",
        {"lora_name": "lora_name", "strength_model": "strength_model", "strength_clip": "strength_clip"},
        {"model": "model", "clip": "clip"},
        ("model", "clip"),
    ),  # fmt: skip
    "model.lora_model_only": (
        "LoraLoaderModelOnly",
        {"lora_name": "lora_name", "strength_model": "strength_model"},
        {"model": "model"},
        ("model",),
    ),  # fmt: skip
    "latent.vae_encode": ("VAEEncode", {}, {"pixels": "image", "vae": "vae"}, ("latent",)),
    "control.load": ("ControlNetLoader", {"control_net_name": "controlnet"}, {}, ("control_net",)),
    "image.load": ("LoadImage", {"image": "path"}, {}, ("image", "mask")),
    "image.preview": ("PreviewImage", {}, {"images": "image"}, ()),
    "model.upscale": ("UpscaleModelLoader", {"model_name": "model_name"}, {}, ("upscale_model",)),
    "image.upscale_with_model": (
        "ImageUpscaleWithModel",
        {},
        {"upscale_model": "upscale_model", "image": "image"},
        ("image",),
    ),
    "latent.upscale_by": (
        "LatentUpscaleBy",
        {"upscale_method": "method", "scale_by": "scale_by"},
        {"samples": "latent"},
        ("latent",),
    ),
}


@dataclass
class ExportReport:
    exported: int = 0
    skipped: list[str] = field(default_factory=list)  # "node: why"
    notes: list[str] = field(default_factory=list)


class Exporter:
    def __init__(self, graph: Graph, registry: Any) -> None:
        self.graph, self.registry = graph, registry
        self.report = ExportReport()
        self.prompt: dict[str, dict[str, Any]] = {}
        known = (graph.meta.get("comfyui") or {}).get("ids", {}) if isinstance(graph.meta, dict) else {}
        self.ids: dict[str, str] = {node: str(cid) for node, cid in known.items() if node in graph.nodes}
        numbers = [int(v) for v in self.ids.values() if v.isdigit()]
        self._next = max(numbers, default=0) + 1
        self.outputs: dict[tuple[str, str], list[Any]] = {}  # (our node, port) -> [their id, slot]
        self.links: list[tuple[str, str, str, str]] = []  # (their id, their input, our node, our port)

    def their_id(self, node_id: str, part: str = "") -> str:
        key = f"{node_id}#{part}" if part else node_id
        if key not in self.ids:
            while str(self._next) in self.ids.values():
                self._next += 1
            self.ids[key] = str(self._next)
        return self.ids[key]

    def emit(self, their: str, class_type: str, inputs: dict[str, Any], title: str = "") -> None:
        entry: dict[str, Any] = {"class_type": class_type, "inputs": inputs}
        if title:
            entry["_meta"] = {"title": title}
        self.prompt[their] = entry
        self.report.exported += 1

    def link(self, their: str, name: str, node_id: str, port: str) -> None:
        """ComfyUI input `name` of `their` takes what feeds our `node_id.port`."""
        self.links.append((their, name, node_id, port))

    def run(self) -> dict[str, Any]:
        for node in self.graph:
            if node.mode == "mute":
                self.report.skipped.append(f"{node.id}: muted")
                continue
            handler = HANDLERS.get(node.type)
            if node.type in SIMPLE:
                self._simple(node)
            elif handler is not None:
                handler(self, node)
            elif node.type.startswith(PLACEHOLDER):
                self._placeholder(node)
            elif node.type not in ("sampling.scheduler", "sampling.guidance"):  # part of a KSampler
                self.report.skipped.append(f"{node.id} ({node.type}): no ComfyUI core node does this")
        for their, name, node_id, port in self.links:
            edge = self.graph.input_edge(node_id, port)
            source = self.outputs.get((edge.src, edge.src_port)) if edge is not None else None
            if source is not None and their in self.prompt:
                self.prompt[their]["inputs"][name] = list(source)
            elif edge is not None and their in self.prompt:
                self.report.skipped.append(
                    f"{node_id}.{port}: its input comes from {edge.src}, which is not exported"
                )
        return self.prompt

    def _simple(self, node: Any) -> None:
        class_type, params, inputs, outputs = SIMPLE[node.type]
        their = self.their_id(node.id)
        values = {
            name: node.params.get(ours, self._default(node.type, ours)) for name, ours in params.items()
        }
        if class_type == "UNETLoader":
            values["weight_dtype"] = "default"
        if class_type == "LoadImage":
            values["upload"] = "image"
        self.emit(their, class_type, values, node.title)
        for name, port in inputs.items():
            self.link(their, name, node.id, port)
        for slot, port in enumerate(outputs):
            self.outputs[(node.id, port)] = [their, slot]

    def _default(self, type_id: str, name: str) -> Any:
        spec = self.registry.get(type_id)
        param = spec.param(name) if spec is not None else None
        return param.default if param is not None else None

    def _placeholder(self, node: Any) -> None:
        their = str(node.params.get("comfyui_id") or self.their_id(node.id))
        inputs = dict(node.params.get("inputs") or {})
        if node.params.get("widgets_values") and not inputs:
            self.report.notes.append(
                f"{node.id}: {node.type[len(PLACEHOLDER) :]} written without its widget values (their names are unknown)"
            )
        self.emit(their, node.type[len(PLACEHOLDER) :], inputs, node.title)
        for edge in [e for e in self.graph.edges if e.dst == node.id]:
            self.link(their, edge.dst_port, node.id, edge.dst_port)
        for edge in [e for e in self.graph.edges if e.src == node.id]:
            slot = (
                int(edge.src_port[3:])
                if edge.src_port.startswith("out") and edge.src_port[3:].isdigit()
                else 0
            )
            self.outputs[(node.id, edge.src_port)] = [their, slot]


HANDLERS: dict[str, Any] = {}


def handles(*type_ids: str):
    def register(function):
        for type_id in type_ids:
            HANDLERS[type_id] = function
        return function

    return register


def export_api(graph: Graph, registry: Any) -> tuple[dict[str, Any], ExportReport]:
    """ComfyUI API-format prompt for the graph (subgraphs as their nodes: a KSampler subgraph becomes a
    KSampler), and what could not be exported."""
    from app.interop.comfyui import export_nodes  # noqa: F401  (registers the handlers)

    exporter = Exporter(subgraphs.flatten(graph)[0], registry)
    return exporter.run(), exporter.report


__all__ = ["SAMPLER_NAMES", "SCHEDULER_NAMES", "ExportReport", "Exporter", "export_api", "handles"]
