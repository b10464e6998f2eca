"""ComfyUI workflows in Nodeloom: `import_workflow` (UI or API format, or a ComfyUI PNG) -> (Graph, Report),
`export_api` (a graph -> ComfyUI's API format), `load_graph` (any graph file: Nodeloom's, or ComfyUI's
imported on the fly). See workflow.py (reading), convert.py and convert_sampling.py (the node table), importer.py, export.py.
Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.graph import pngmeta, serialize
from app.graph.model import Edge, Graph
from app.interop.comfyui import convert, convert_sampling  # noqa: F401  (convert_sampling registers)
from app.interop.comfyui.export import export_api
from app.interop.comfyui.importer import PLACEHOLDER, Importer, Report
from app.interop.comfyui.workflow import WorkflowProblem, kind, read

__all__ = [
    "PLACEHOLDER",
    "Report",
    "WorkflowProblem",
    "export_api",
    "import_workflow",
    "kind",
    "load_graph",
    "read_any",
]


def import_workflow(data: Any) -> tuple[Graph, Report]:
    """A Nodeloom graph (and what the import did) from parsed ComfyUI workflow JSON."""
    workflow = read(data)
    imp = Importer(workflow)
    for node in sorted(workflow.nodes.values(), key=lambda n: _order_key(n.id)):
        converter = convert.CONVERTERS.get(node.type)
        if converter is None:
            imp.placeholder(node)
            continue
        kept = len(imp.report.placeholders)
        converter(imp, node)
        if len(imp.report.placeholders) == kept:  # a converter may keep a node it cannot map
            imp.report.mapped[node.type] = imp.report.mapped.get(node.type, 0) + 1
    imp.connect()
    _finish(imp)
    imp.layout()
    return imp.graph, imp.report


def _order_key(node_id: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in node_id.split(":"))


def _finish(imp: Importer) -> None:
    """What links alone cannot say: settings carried by pass-through nodes, and the VAE an empty latent
    needs (ComfyUI's knows none)."""
    graph = imp.graph
    for (node_id, _port), carry in imp.carried.items():
        node = graph.nodes[node_id]
        if "clip_skip" in carry and node.type == "conditioning.text_encode":
            node.params["clip_skip"] = int(carry["clip_skip"])
    for sampler, schedule, guidance in imp.trios:
        model = imp.carried.get((sampler, "model"), {})
        if "shift" in model:
            graph.nodes[schedule].params["shift"] = float(model["shift"])
        positive = imp.carried.get((sampler, "positive"), {})
        if "guidance" in positive:  # Flux: FluxGuidance / CLIPTextEncodeFlux is the distilled guidance
            graph.nodes[guidance].params["scale"] = float(positive["guidance"])
    vaes = [(n.id, "vae") for n in graph if n.type in ("model.checkpoint", "model.vae")]
    for latent in imp.needs_vae:
        found = _vae_near(graph, latent) or (vaes[0] if vaes else None)
        if found is not None and graph.input_edge(latent, "vae") is None:
            graph.connect(Edge(found[0], found[1], latent, "vae"))


def _vae_near(graph: Graph, latent: str) -> tuple[str, str] | None:
    """The VAE that decodes what the latent becomes: follow it downstream to a VAE Decode."""
    seen, queue = set(), [latent]
    while queue:
        current = queue.pop(0)
        for edge in graph.outgoing(current):
            if edge.dst in seen:
                continue
            seen.add(edge.dst)
            if graph.nodes[edge.dst].type == "latent.vae_decode":
                vae = graph.input_edge(edge.dst, "vae")
                if vae is not None:
                    return vae.src, vae.src_port
            queue.append(edge.dst)
    return None


def read_any(raw: bytes, source: str) -> Any | None:
    """Parsed ComfyUI workflow data from a file's bytes (JSON, or a PNG ComfyUI wrote), or None when the
    bytes are not a ComfyUI workflow."""
    if raw.startswith(pngmeta.SIGNATURE):
        from app.interop.comfyui.workflow import from_png

        if pngmeta.read_text(raw, keys=(serialize.PNG_KEY,)):
            return None  # a Nodeloom picture: its own graph comes first
        return from_png(raw)
    try:
        data = serialize.parse_json(raw.decode("utf-8"), source)
    except (UnicodeDecodeError, serialize.GraphFileError):
        return None
    return data if kind(data) else None


def load_graph(path: str | Path, specs: Any = None) -> tuple[Graph, Report | None]:
    """A graph file of either kind: Nodeloom's (JSON or PNG), or ComfyUI's imported on the fly (then the
    report says what the import did). GraphFileError names the file when it is neither."""
    raw = serialize.read_file(path)
    data = read_any(raw, str(path))
    if data is None:
        return serialize.load(path, specs), None
    try:
        graph, report = import_workflow(data)
    except (WorkflowProblem, KeyError, TypeError, ValueError) as error:
        raise serialize.GraphFileError(
            f"{path}: a ComfyUI workflow this import cannot read ({error})"
        ) from None
    return serialize.loads(json.dumps(serialize.to_dict(graph)), specs, source=str(path)), report
