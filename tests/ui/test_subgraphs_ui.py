"""Subgraphs in the editor: Ctrl+G makes one node of the selection (drawn with the definition's ports and
its exposed params in the inspector), one undo step; Ctrl+Shift+G unpacks it; the file keeps the definition;
search offers the graph's subgraphs."""

from __future__ import annotations

from app.graph import serialize


def test_make_unpack_and_undo(window, qtbot):
    editor = window.editor
    before = serialize.dumps(editor.graph)
    editor.select_nodes(["shape"])
    monkey_choice = ("blob", [("shape", "size"), ("shape", "shape")])
    editor.ask_subgraph = lambda nodes: monkey_choice
    window.actions_by_name["make_subgraph"].trigger()
    graph = editor.graph
    assert set(graph.nodes) == {"blob", "save"} and graph.nodes["blob"].type == "subgraph:blob"
    item = editor.scene.nodes["blob"]
    spec = editor.registry.get("subgraph:blob")
    assert [p.name for p in spec.outputs] == ["image"] and [p.name for p in spec.params] == ["size", "shape"]
    assert item.spec is spec
    assert [(e.src, e.dst) for e in graph.edges] == [("blob", "save")]
    text = serialize.dumps(graph)
    assert '"subgraphs"' in text and serialize.dumps(serialize.loads(text, editor.registry)) == text
    assert any(s.type == "subgraph:blob" for s in editor.registry.offered())  # offered by search
    editor.history.undo()
    assert serialize.dumps(graph) == before
    editor.history.redo()
    editor.select_nodes(["blob"])
    window.actions_by_name["unpack_subgraph"].trigger()
    assert set(graph.nodes) == {"shape", "save"} and "blob" not in graph.definitions
    assert [(e.src, e.dst) for e in graph.edges] == [("shape", "save")]


def test_unpack_wants_one_subgraph_node(window):
    window.editor.select_nodes(["shape"])
    window.actions_by_name["unpack_subgraph"].trigger()
    assert "select one subgraph node" in window.statusBar().currentMessage()


def test_search_offers_the_ksampler_template_and_adding_it_brings_its_definition():
    from app.graph.commands import AddNode
    from app.graph.history import History
    from app.graph.model import Graph
    from app.registry import default_registry
    from app.ui.search import rank

    registry = default_registry()
    assert rank(registry.offered(), "KSampler")[0].type == "subgraph:ksampler"
    graph = Graph()
    History(graph, registry).push(AddNode("subgraph:ksampler", (0, 0)))
    assert list(graph.definitions) == ["ksampler"]
    assert set(graph.nodes["subgraph_ksampler"].params) == {
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
    }
