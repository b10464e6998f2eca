"""The worker process: runs off the caller's thread, streams events, cancels, survives a hard kill."""

from __future__ import annotations

import time

import pytest

from app.engine.worker import Worker
from app.graph import serialize
from app.graph.model import Edge, Graph, Node

REGISTRY = "tests.engine.worker_nodes:registry"


def _graph(middle: str, **params) -> str:
    graph = Graph()
    graph.add_node(Node("src", "w.source"))
    graph.add_node(Node("work", middle, params=params))
    graph.add_node(Node("sink", "w.sink"))
    graph.connect(Edge("src", "value", "work", "value"))
    graph.connect(Edge("work", "value", "sink", "value"))
    return serialize.dumps(graph)


def _until_done(worker: Worker, limit: float = 60.0) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        seen += worker.events(timeout=0.2)
        if any(e["event"] == "run_done" for e in seen):
            return seen
    raise AssertionError(f"no run_done within {limit}s: {seen}")


@pytest.fixture
def worker(tmp_path):
    worker = Worker(cache_dir=tmp_path / "cache", registry=REGISTRY)
    yield worker
    worker.close()


def test_events_stream_back_and_results_stay_cached_in_the_worker(worker, tmp_path):
    run = worker.submit(_graph("w.steps", steps=3), output_dir=str(tmp_path))
    events = _until_done(worker)
    assert all(e.get("run") == run for e in events if e["event"] != "worker_ready")
    kinds = [
        (e["event"], e.get("node"))
        for e in events
        if e["event"] in ("started", "progress", "finished", "output")
    ]
    assert kinds[:5] == [
        ("started", "src"),
        ("finished", "src"),
        ("started", "work"),
        ("progress", "work"),
        ("progress", "work"),
    ]
    assert next(e for e in events if e["event"] == "output")["value"] == 4.0
    assert events[-1]["status"] == "ok" and worker.running is None
    worker.submit(_graph("w.steps", steps=3), output_dir=str(tmp_path))
    again = _until_done(worker)
    assert [e["node"] for e in again if e["event"] == "cached"] == ["work"]
    assert [e["node"] for e in again if e["event"] == "started"] == ["sink"]


def test_previews_are_throttled_but_the_last_step_always_arrives(worker, tmp_path):
    worker.submit(_graph("w.steps", steps=20, delay=0.01), output_dir=str(tmp_path))
    previews = [e for e in _until_done(worker) if e["event"] == "preview"]
    assert 1 <= len(previews) < 20
    assert previews[-1]["step"] == 20 and previews[-1]["image"].shape == (2, 2, 3)


def test_cancel_stops_within_one_step(worker, tmp_path):
    worker.submit(_graph("w.steps", steps=200, delay=0.02), output_dir=str(tmp_path))
    seen: list[dict] = []
    while not any(e["event"] == "progress" for e in seen):
        seen += worker.events(timeout=0.2)
    worker.cancel()
    seen += _until_done(worker)
    steps = [e["step"] for e in seen if e["event"] == "progress"]
    assert seen[-1]["status"] == "cancelled" and max(steps) < 200
    assert {"event": "cancelled", "node": "work", "run": seen[-1]["run"]} in seen


def test_kill_stops_a_node_that_ignores_cancel_and_the_disk_cache_survives(worker, tmp_path):
    worker.submit(_graph("w.stubborn"), output_dir=str(tmp_path))
    seen: list[dict] = []
    while not any(e["event"] == "started" and e["node"] == "work" for e in seen):
        seen += worker.events(timeout=0.2)
    start = time.monotonic()
    stopped = worker.kill()
    assert stopped[0]["status"] == "killed" and time.monotonic() - start < 10 and not worker.alive
    worker.submit(_graph("w.steps", steps=1), output_dir=str(tmp_path))
    events = _until_done(worker)
    assert events[-1]["status"] == "ok"
    assert ("cached", "src", "disk") in [(e["event"], e.get("node"), e.get("source")) for e in events]
