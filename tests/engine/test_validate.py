"""Validation reports every problem at once, each naming the node and the port or param."""

from __future__ import annotations

from app.engine.plan import effective_graph, validate
from app.files import FileResolver
from app.graph.model import Edge, Graph, Node
from app.registry import default_registry


def _messages(problems):
    return sorted(str(p) for p in problems)


def test_all_problems_are_reported_together(counting, tmp_path):
    graph = Graph()
    graph.add_node(Node("lonely", "test.add", params={"offset": "lots"}))  # missing input + bad param
    graph.add_node(Node("alien", "vendor.unknown", params={"x": 1}))
    graph.add_node(Node("src", "test.source", params={"value": 1.0, "typo": 3}))
    graph.add_node(Node("m", "test.model"))
    graph.add_node(Node("use", "test.use"))
    graph.edges.append(Edge("src", "value", "use", "model"))  # wrong type, bypassing can_connect
    problems = validate(graph, counting.registry, FileResolver(base_dirs=(tmp_path,)))
    text = _messages(problems)
    assert "node 'lonely' 'a': required input (FLOAT) is not connected" in text
    assert any(t.startswith("node 'lonely' 'offset': expected a number") for t in text)
    assert any("unknown node type 'vendor.unknown'" in t and t.startswith("node 'alien'") for t in text)
    assert "node 'src' 'typo': unknown param for Source" in text
    assert "node 'use' 'model': takes MODEL but 'src.value' gives FLOAT" in text
    assert len(problems) == 5


def test_cycles_are_named(counting):
    graph = Graph()
    for node_id in ("a", "b", "c"):
        graph.add_node(Node(node_id, "test.add"))
    graph.edges += [Edge("a", "value", "b", "a"), Edge("b", "value", "c", "a"), Edge("c", "value", "a", "a")]
    problems = validate(graph, counting.registry)
    assert any("cycle" in p.message and all(n in p.message for n in "abc") for p in problems)


def test_family_mismatch_is_refused_before_running(counting):
    graph = Graph()
    graph.add_node(Node("base", "test.model", params={"family": "sd15"}))
    graph.add_node(Node("xl", "test.model", params={"family": "sdxl"}))
    graph.add_node(Node("use", "test.use"))
    graph.connect(Edge("base", "model", "use", "model"))
    graph.connect(Edge("xl", "model", "use", "control"))
    problems = validate(graph, counting.registry)
    assert [str(p) for p in problems] == [
        "node 'use': model families differ: sd15, sdxl (control: sdxl, model: sd15)"
    ]
    graph.set_param("xl", "family", "sd15")
    assert validate(graph, counting.registry) == []


def test_missing_files_are_reported_with_where_we_looked(tmp_path):
    graph = Graph()
    graph.add_node(Node("load", "image.load", params={"path": "nowhere.png"}))
    graph.add_node(Node("save", "image.save"))
    graph.connect(Edge("load", "image", "save", "image"))
    problems = validate(graph, default_registry(), FileResolver(base_dirs=(tmp_path,)))
    assert len(problems) == 1
    assert problems[0].node == "load" and problems[0].where == "path"
    assert "nowhere.png" in problems[0].message and str(tmp_path) in problems[0].message


def test_model_paths_may_not_leave_the_roots(tmp_path):
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    (root / "checkpoints" / "ok.safetensors").write_bytes(b"x")
    resolver = FileResolver(model_roots=(root,))
    assert resolver.resolve("model:checkpoints", "ok.safetensors") == root / "checkpoints" / "ok.safetensors"
    for sneaky in ("../../secret.safetensors", str(tmp_path / "secret.safetensors")):
        try:
            resolver.resolve("model:checkpoints", sneaky)
        except ValueError as error:
            assert "leaves the model roots" in str(error)
        else:
            raise AssertionError(f"{sneaky} escaped the model roots")
    assert resolver.list_models("checkpoints") == ["ok.safetensors"]


def test_bypass_passes_inputs_through_and_mute_blocks(counting):
    graph = Graph()
    graph.add_node(Node("src", "test.source"))
    graph.add_node(Node("mid", "test.add", mode="bypass"))
    graph.add_node(Node("sink", "test.sink"))
    graph.connect(Edge("src", "value", "mid", "a"))
    graph.connect(Edge("mid", "value", "sink", "value"))
    runnable, problems = effective_graph(graph, counting.registry)
    assert problems == [] and "mid" not in runnable.nodes
    assert [(e.src, e.dst) for e in runnable.edges] == [("src", "sink")]
    graph.set_mode("mid", "mute")
    _, problems = effective_graph(graph, counting.registry)
    assert [str(p) for p in problems] == [
        "node 'sink' 'value': comes from 'mid.value', but node 'mid' is muted"
    ]


def test_a_link_a_muted_node_took_away_is_said_once_by_the_run_and_the_badges(counting):
    from app.engine.executor import Executor
    from app.engine.status import StatusTracker

    graph = Graph()
    graph.add_node(Node("src", "test.source"))
    graph.add_node(Node("mid", "test.add", mode="mute"))
    graph.add_node(Node("sink", "test.sink"))
    graph.connect(Edge("src", "value", "mid", "a"))
    graph.connect(Edge("mid", "value", "sink", "value"))
    expected = ["node 'sink' 'value': comes from 'mid.value', but node 'mid' is muted"]
    result = Executor(counting.registry).run(graph)
    assert [str(p) for p in result.problems] == expected  # not also "required input is not connected"
    tracker = StatusTracker(counting.registry)
    tracker.states(graph)
    assert [str(p) for p in tracker.problems] == expected


def test_a_chain_of_bypassed_nodes_passes_through_all_of_them(counting):
    graph = Graph()
    graph.add_node(Node("src", "test.source"))
    graph.add_node(Node("one", "test.add", mode="bypass"))
    graph.add_node(Node("two", "test.add", mode="bypass"))
    graph.add_node(Node("sink", "test.sink"))
    graph.connect(Edge("src", "value", "one", "a"))
    graph.connect(Edge("one", "value", "two", "a"))
    graph.connect(Edge("two", "value", "sink", "value"))
    for order in (["src", "one", "two", "sink"], ["sink", "two", "one", "src"]):
        graph.nodes = {k: graph.nodes[k] for k in order}
        runnable, problems = effective_graph(graph, counting.registry)
        assert problems == [] and [(e.src, e.dst) for e in runnable.edges] == [("src", "sink")]


def test_every_problem_carries_a_machine_readable_code(counting, tmp_path):
    graph = Graph()
    graph.add_node(Node("lonely", "test.add", params={"offset": "lots"}))
    graph.add_node(Node("alien", "vendor.unknown"))
    graph.add_node(Node("src", "test.source", params={"value": 1.0, "typo": 3}))
    graph.add_node(Node("use", "test.use"))
    graph.add_node(Node("a", "test.model", params={"family": "sd15"}))
    graph.add_node(Node("b", "test.model", params={"family": "sdxl"}))
    graph.add_node(Node("both", "test.use"))
    graph.edges.append(Edge("src", "value", "use", "model"))
    graph.edges += [Edge("a", "model", "both", "model"), Edge("b", "model", "both", "control")]
    codes = {
        (p.node, p.where): p.code
        for p in validate(graph, counting.registry, FileResolver(base_dirs=(tmp_path,)))
    }
    assert codes == {
        ("lonely", "a"): "required_input_missing",
        ("lonely", "offset"): "invalid_input_type",
        ("alien", None): "unknown_node_type",
        ("src", "typo"): "unknown_param",
        ("use", "model"): "return_type_mismatch",
        ("both", None): "model_family_mismatch",
    }


def test_range_and_choice_problems_have_comfyui_codes():
    from app.graph import types as T
    from app.graph.spec import Param

    number = Param("n", T.INT, 1, min=0, max=5)
    assert (
        number.check(-1).code == "value_smaller_than_min" and number.check(9).code == "value_bigger_than_max"
    )
    assert Param("c", T.STRING, "a", choices=("a", "b")).check("z").code == "value_not_in_list"
    assert number.check(3) is None and str(number.check(9)) == "9 is above the maximum 5"
