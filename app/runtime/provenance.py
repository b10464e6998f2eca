"""What a saved image records about how it was made: seeds, model file hashes, library versions, device.

Read from the graph being run (ctx.settings.graph_json): every SEED param's value (seeds are explicit params,
so these are the seeds that ran) and every model file param's resolved path and sha256 content hash.
Versions come from package metadata, so nothing here imports torch (the device is described precisely only
when torch is already loaded, i.e. when a diffusion node ran). Never import Qt here.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from app.engine.context import Context
from app.files import FileProblem
from app.graph import serialize
from app.graph import types as T
from app.registry import default_registry
from app.runtime import checkpoints, device

PACKAGES = ("torch", "diffusers", "transformers")


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(ctx: Context) -> dict[str, Any]:
    """Seeds, models (path + sha256), versions and device/dtype of the run `ctx` belongs to."""
    data: dict[str, Any] = {"versions": versions(), **device.describe(ctx.device)}
    if not ctx.settings.graph_json:
        return data
    registry = default_registry()
    graph = serialize.loads(ctx.settings.graph_json, registry)
    seeds, models = {}, {}
    for node in graph:
        spec = registry.get(node.type)
        if spec is None:
            continue
        for param in spec.params:
            value = node.params.get(param.name, param.default)
            if param.type == T.SEED and graph.input_edge(node.id, param.name) is None:
                seeds[f"{node.id}.{param.name}"] = value
            elif (param.path or "").startswith("model:"):
                try:
                    path = ctx.settings.resolver.resolve(param.path, value)
                except FileProblem:
                    continue
                models[node.id] = {"path": str(path), "sha256": checkpoints.content_hash(Path(path))}
    data.update(seeds=seeds, models=models)
    return data
