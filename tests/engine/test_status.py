"""Badge states from keys: cached, stale with a reason, error, blocked, bypass/mute."""

from __future__ import annotations

from app.engine.executor import Executor
from app.engine.status import StatusTracker
from app.graph.model import Edge, Graph, Node
from tests.conftest import chain


def _run(tracker: StatusTracker, executor: Executor, graph: Graph):
    tracker.submitted(graph)
    return executor.run(graph, on_event=tracker.observe)


def _state_names(states):
    return {node: state.state for node, state in states.items()}


def test_states_follow_runs_and_param_changes(counting):
    graph = chain(3)
    tracker, executor = StatusTracker(counting.registry), Executor(counting.registry)
    assert set(_state_names(tracker.states(graph)).values()) == {"stale"}
    assert tracker.states(graph)["add_1"].reason == "never ran"
    _run(tracker, executor, graph)
    assert _state_names(tracker.states(graph)) == {n: "cached" for n in graph.nodes}
    graph.set_param("add_2", "offset", 5.0)
    states = tracker.states(graph)
    assert _state_names(states) == {
        "src": "cached",
        "add_1": "cached",
        "add_2": "stale",
        "add_3": "stale",
        "sink": "stale",
    }
    assert states["add_2"].reason == "param changed: offset 0.0 -> 5.0"
    assert states["add_3"].reason == "input changed: a (from add_2)"
    graph.set_param("add_2", "offset", 0.0)  # back to a known result: cached again, nothing to run
    assert set(_state_names(tracker.states(graph)).values()) == {"cached"}


def test_errors_and_blocked_descendants(counting):
    graph = Graph()
    graph.add_node(Node("src", "test.source"))
    graph.add_node(Node("bad", "test.fail"))
    graph.add_node(Node("after", "test.add"))
    graph.add_node(Node("sink", "test.sink"))
    graph.connect(Edge("src", "value", "bad", "a"))
    graph.connect(Edge("bad", "value", "after", "a"))
    graph.connect(Edge("after", "value", "sink", "value"))
    tracker, executor = StatusTracker(counting.registry), Executor(counting.registry)
    _run(tracker, executor, graph)
    states = tracker.states(graph)
    assert _state_names(states) == {"src": "cached", "bad": "error", "after": "blocked", "sink": "blocked"}
    assert states["bad"].reason == "asked to fail"
    graph.set_param("bad", "fail", False)
    assert _state_names(tracker.states(graph))["bad"] == "stale"
    graph.set_param("src", "value", "oops")
    states = tracker.states(graph)
    assert states["src"].state == "error" and "expected a number" in states["src"].reason
    assert _state_names(states) == {"src": "error", "bad": "blocked", "after": "blocked", "sink": "blocked"}


def test_bypassed_and_muted_nodes_say_so(counting):
    graph = chain(2)
    graph.set_mode("add_1", "bypass")
    states = StatusTracker(counting.registry).states(graph)
    assert states["add_1"].state == "bypass" and states["add_2"].state == "stale"
