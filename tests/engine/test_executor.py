"""Incremental execution: what runs, what comes from cache, errors, cancellation, stores."""

from __future__ import annotations

import numpy as np

from app.engine.context import CancelToken
from app.engine.executor import Executor
from app.engine.store import DiskStore, MemoryStore
from app.graph.model import Edge, Graph, Node
from tests.conftest import chain


def _events(result_sink):
    return lambda event: result_sink.append(event)


def test_unchanged_graph_runs_only_outputs_the_second_time(counting):
    graph = chain(3)
    executor = Executor(counting.registry)
    first = executor.run(graph)
    assert first.status == "ok" and first.ran == ["src", "add_1", "add_2", "add_3", "sink"]
    counting.runs.clear()
    events = []
    second = executor.run(graph, on_event=_events(events))
    assert second.cached == ["add_3"]  # the walk stops at the first cached result
    assert dict(counting.runs) == {"sink": 1}
    assert [e["event"] for e in events] == ["cached", "started", "output", "finished"]


def test_changing_one_param_reruns_only_that_node_and_its_dependents(counting):
    graph = chain(4)
    executor = Executor(counting.registry)
    executor.run(graph)
    counting.runs.clear()
    graph.set_param("add_3", "offset", 10.0)
    result = executor.run(graph)
    assert dict(counting.runs) == {"add_3": 1, "add_4": 1, "sink": 1}
    assert result.cached == ["add_2"]


def test_side_branch_change_does_not_touch_the_other_branch(counting):
    graph = Graph()
    graph.add_node(Node("left", "test.source", params={"value": 1.0}))
    graph.add_node(Node("right", "test.source", params={"value": 2.0}))
    graph.add_node(Node("join", "test.add"))
    graph.add_node(Node("sink", "test.sink"))
    graph.connect(Edge("left", "value", "join", "a"))
    graph.connect(Edge("right", "value", "join", "b"))
    graph.connect(Edge("join", "value", "sink", "value"))
    executor = Executor(counting.registry)
    executor.run(graph)
    counting.runs.clear()
    graph.set_param("right", "value", 5.0)
    result = executor.run(graph)
    assert dict(counting.runs) == {"right": 1, "join": 1, "sink": 1}
    assert result.outputs["sink"] == {} and executor.memory.get(result.keys["join"])["value"] == 6.0


def test_keys_do_not_depend_on_node_ids(counting):
    executor = Executor(counting.registry)
    executor.run(chain(2))
    counting.runs.clear()
    renamed = Graph()
    renamed.add_node(Node("first", "test.source", params={"value": 1.0}))
    renamed.add_node(Node("second", "test.add"))
    renamed.add_node(Node("third", "test.add"))
    renamed.add_node(Node("out", "test.sink"))
    renamed.connect(Edge("first", "value", "second", "a"))
    renamed.connect(Edge("second", "value", "third", "a"))
    renamed.connect(Edge("third", "value", "out", "value"))
    result = executor.run(renamed)
    assert dict(counting.runs) == {"out": 1} and result.cached == ["third"]


def test_a_failing_node_keeps_upstream_cached_and_blocks_only_its_dependents(counting):
    graph = Graph()
    graph.add_node(Node("src", "test.source"))
    graph.add_node(Node("ok", "test.add"))
    graph.add_node(Node("bad", "test.fail"))
    graph.add_node(Node("after", "test.add"))
    graph.add_node(Node("sink_ok", "test.sink"))
    graph.add_node(Node("sink_bad", "test.sink"))
    graph.connect(Edge("src", "value", "ok", "a"))
    graph.connect(Edge("src", "value", "bad", "a"))
    graph.connect(Edge("bad", "value", "after", "a"))
    graph.connect(Edge("ok", "value", "sink_ok", "value"))
    graph.connect(Edge("after", "value", "sink_bad", "value"))
    executor = Executor(counting.registry)
    events = []
    result = executor.run(graph, on_event=_events(events))
    assert result.status == "error" and result.errors == {"bad": "asked to fail"}
    assert {e["node"] for e in events if e["event"] == "blocked"} == {"after", "sink_bad"}
    assert counting.runs["sink_ok"] == 1 and counting.runs["after"] == 0
    error = next(e for e in events if e["event"] == "error")
    # a user error: no traceback, and the inputs the node got, summarised for the editor's errors panel
    assert error == {"event": "error", "node": "bad", "message": "asked to fail", "inputs": {"a": "1.0"}}
    counting.runs.clear()
    graph.set_param("bad", "fail", False)
    fixed = executor.run(graph)
    assert fixed.status == "ok"
    assert dict(counting.runs) == {"bad": 1, "after": 1, "sink_ok": 1, "sink_bad": 1}


def test_an_unexpected_exception_is_reported_with_its_traceback(counting):
    graph = chain(1)
    counting.hooks["add_1"] = lambda ctx: 1 / 0
    events = []
    result = Executor(counting.registry).run(graph, on_event=_events(events))
    error = next(e for e in events if e["event"] == "error")
    assert result.status == "error" and error["message"] == "ZeroDivisionError: division by zero"
    assert "Traceback" in error["traceback"]


def test_cancel_stops_between_nodes_and_keeps_what_finished(counting):
    graph = chain(4)
    token = CancelToken()
    counting.hooks["add_2"] = lambda ctx: token.cancel()
    executor = Executor(counting.registry)
    events = []
    result = executor.run(graph, token=token, on_event=_events(events))
    assert result.status == "cancelled"
    assert counting.runs["add_3"] == 0
    assert {"event": "cancelled", "node": "add_3"} in events
    counting.runs.clear()
    result = executor.run(graph)
    assert result.status == "ok" and result.cached == ["add_2"]
    assert dict(counting.runs) == {"add_3": 1, "add_4": 1, "sink": 1}


def test_a_node_may_stop_itself_on_cancel(counting):
    token = CancelToken()

    def stop_inside(ctx):
        token.cancel()
        ctx.check_cancelled()

    counting.hooks["add_1"] = stop_inside
    events = []
    result = Executor(counting.registry).run(chain(2), token=token, on_event=_events(events))
    assert result.status == "cancelled" and [e["event"] for e in events][-1] == "cancelled"
    assert counting.runs["add_2"] == 0


def test_volatile_nodes_always_run_and_invalidate_dependents(counting):
    graph = Graph()
    graph.add_node(Node("clock", "test.clock"))
    graph.add_node(Node("add", "test.add"))
    graph.add_node(Node("sink", "test.sink"))
    graph.connect(Edge("clock", "value", "add", "a"))
    graph.connect(Edge("add", "value", "sink", "value"))
    executor = Executor(counting.registry)
    executor.run(graph)
    executor.run(graph)
    assert counting.runs["clock"] == 2 and counting.runs["add"] == 2


def test_target_runs_only_what_it_needs(counting):
    graph = chain(3)
    result = Executor(counting.registry).run(graph, targets=["add_1"])
    assert result.ran == ["src", "add_1"] and result.outputs["add_1"] == {"value": 1.0}
    assert counting.runs["sink"] == 0


def test_memory_store_evicts_least_recently_used_by_bytes():
    store = MemoryStore(budget=2500)
    store.put("a", {"x": np.zeros(100, np.float64)})  # 800 bytes + overhead
    store.put("b", {"x": np.zeros(100, np.float64)})
    assert store.get("a") is not None  # a is now the most recent
    store.put("c", {"x": np.zeros(150, np.float64)})
    assert "b" not in store and "a" in store and "c" in store
    assert store.used <= store.budget
    assert store.put("huge", {"x": np.zeros(1000, np.float64)}) is False and "huge" not in store


def test_disk_store_is_shared_between_executors(counting, tmp_path):
    graph = chain(2)
    Executor(counting.registry, disk=DiskStore(tmp_path)).run(graph)
    counting.runs.clear()
    events = []
    fresh = Executor(counting.registry, disk=DiskStore(tmp_path))
    fresh.run(graph, on_event=_events(events))
    assert dict(counting.runs) == {"sink": 1}
    cached = next(e for e in events if e["event"] == "cached")
    assert cached["node"] == "add_2" and cached["source"] == "disk" and len(cached["key"]) == 64


def test_disk_store_round_trips_values_and_caps_size(tmp_path):
    store = DiskStore(tmp_path, cap=10_000)
    image = (np.arange(2 * 8 * 8 * 3) % 256).astype(np.uint8).reshape(2, 8, 8, 3)
    value = {
        "latent": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
        "image": image,
        "meta": {"steps": 4, "names": ("a", "b")},
        "flag": True,
    }
    assert store.put("k1", value)
    again = store.get("k1")
    np.testing.assert_array_equal(again["latent"], value["latent"])
    np.testing.assert_array_equal(again["image"], image)
    assert again["meta"] == {"steps": 4, "names": ("a", "b")} and again["flag"] is True
    assert store.put("model", {"m": object()}) is False and not store.has("model")
    for index in range(20):
        store.put(f"big{index}", {"x": np.random.default_rng(index).random(400).astype(np.float32)})
    assert sum(size for _, size, _ in store.entries()) <= 10_000
    assert store.has("big19") and not store.has("big0")


def test_corrupt_disk_entries_are_misses(tmp_path):
    store = DiskStore(tmp_path)
    store.put("k", {"x": np.ones(3, np.float32)})
    (tmp_path / "k" / "k" / "arrays.safetensors").write_bytes(b"garbage")
    assert store.get("k") is None and not store.has("k")


def test_editing_a_read_file_reruns_its_reader(tmp_path):
    import os

    from app.engine.context import RunSettings
    from app.files import FileResolver
    from app.images import encode_png
    from app.registry import default_registry

    picture = tmp_path / "in.png"
    picture.write_bytes(encode_png(np.zeros((4, 4, 3), np.float32)))
    graph = Graph()
    graph.add_node(Node("load", "image.load", params={"path": "in.png"}))
    graph.add_node(Node("save", "image.save"))
    graph.connect(Edge("load", "image", "save", "image"))
    settings = RunSettings(output_dir=tmp_path / "out", resolver=FileResolver(base_dirs=(tmp_path,)))
    executor = Executor(default_registry())
    assert executor.run(graph, settings=settings).ran == ["load", "save"]
    assert executor.run(graph, settings=settings).cached == ["load"]
    picture.write_bytes(encode_png(np.ones((4, 4, 3), np.float32)))
    os.utime(picture, ns=(1, 1))  # a new mtime even on coarse clocks
    result = executor.run(graph, settings=settings)
    assert result.ran == ["load", "save"]
    saved = sorted((tmp_path / "out").glob("*.png"))
    assert len(saved) == 2  # the unchanged second run wrote no copy; the edited picture a new file
    assert saved[0].read_bytes() != saved[1].read_bytes()


def test_error_summaries_describe_inputs_by_duck_typing_without_torch():
    from app.engine.executor import summarise

    class Tensor:  # looks like a torch tensor: shape and dtype
        shape = (1, 4, 8, 8)
        dtype = "torch.float16"

    class Latent:  # wraps a tensor and says its model family
        samples = Tensor()
        family = "sd15"

    summary = summarise({"latent": Latent(), "steps": 20, "mask": None, "name": "x" * 100})
    assert summary["latent"] == "Latent, shape 1x4x8x8, float16, family sd15"
    assert summary["steps"] == "20" and "mask" not in summary and len(summary["name"]) == 60
