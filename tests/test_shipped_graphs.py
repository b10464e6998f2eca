"""Every graph in graphs/ validates with the shipped models and runs to its outputs (at 2 steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.engine.plan import validate
from app.graph import serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = sorted((ROOT / "graphs").glob("*.json"))


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_every_shipped_graph_validates_and_runs(path, tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(ROOT)  # graphs name their input images relative to the repository
    monkeypatch.delenv("NODELOOM_MODEL_ROOTS", raising=False)
    registry = default_registry()
    graph = serialize.load(path, registry)
    assert [str(p) for p in validate(graph, registry)] == []
    for node in graph:
        if node.type == "sampling.scheduler":
            graph.set_param(node.id, "steps", 2)
    result = Executor(registry).run(graph, settings=RunSettings(device="cpu", output_dir=tmp_path))
    assert result.status == "ok", (result.errors, [str(p) for p in result.problems])
    assert list(tmp_path.iterdir()) or not any(n.type == "image.save" for n in graph)


def test_shipped_prompts_are_titled_positive_and_negative():
    registry = default_registry()
    for path in GRAPHS:
        graph = serialize.load(path, registry)
        for node_id, title in (("prompt", "Positive"), ("negative", "Negative")):
            node = graph.nodes.get(node_id)
            if node is not None and node.type == "conditioning.text_encode":
                assert node.title == title, (path.name, node_id)
