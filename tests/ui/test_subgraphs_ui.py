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


def test_enter_edit_and_leave_a_subgraph(window):
    from app.graph.commands import SetParam

    editor = window.editor
    editor.select_nodes(["shape"])
    editor.ask_subgraph = lambda nodes: ("blob", [("shape", "size")])
    window.actions_by_name["make_subgraph"].trigger()
    outer = editor.graph
    grouped = serialize.dumps(outer)
    editor.select_nodes(["blob"])
    window.actions_by_name["enter_subgraph"].trigger()
    assert editor.inside == "blob" and editor.document is outer
    assert set(editor.scene.nodes) == {"shape"} and not editor.history.can_undo  # its own history
    editor.push(SetParam("shape", "colour", "green"))
    window.runner.run()
    assert "leave the subgraph" in window.run_controls.activity_label.text()  # runs wait for the outside
    assert window.runner.run_id is None
    window.actions_by_name["leave_subgraph"].trigger()
    assert editor.graph is outer and editor.inside == ""
    assert outer.definitions["blob"].graph.nodes["shape"].params["colour"] == "green"
    assert set(editor.scene.nodes) == {"blob", "save"}
    assert editor.history.undo_label == "Edit subgraph"
    editor.history.undo()
    assert serialize.dumps(outer) == grouped
    editor.history.redo()
    editor.select_nodes(["blob"])
    window.actions_by_name["enter_subgraph"].trigger()
    saved = []
    window.path = None
    window.choose_save_path = lambda: saved.append(1) or ""
    window.save()  # saving leaves the subgraph first: what is saved is the graph outside
    assert editor.inside == "" and saved == [1]
