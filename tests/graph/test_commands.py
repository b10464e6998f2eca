"""Commands change the graph and undo restores it exactly; the history merges gestures and tracks saves."""

from __future__ import annotations

import pytest

from app.graph import serialize
from app.graph.clipboard import copy_nodes, is_clip
from app.graph.commands import (
    AddNode,
    Batch,
    CommandError,
    Connect,
    ConvertParam,
    Disconnect,
    Paste,
    Remove,
    SetMode,
    SetParam,
    SetTitle,
)
from app.graph.history import History
from app.graph.layout_commands import AddFrame, AddReroute, Move, SetLayout
from app.graph.model import Edge

SHAPES = "graphs/shapes.json"


@pytest.fixture
def history(registry) -> History:
    return History(serialize.load(SHAPES, registry), registry)


def test_add_connect_undo_redo_restores_exact_text(history):
    start = serialize.dumps(history.graph)
    add = history.push(AddNode("image.save", (600, 40)))
    history.push(Connect(Edge("shape", "image", add.node_id, "image")))
    end = serialize.dumps(history.graph)
    assert add.node_id == "save_2"
    assert history.graph.layout["positions"]["save_2"] == [600.0, 40.0]
    assert history.undo() and history.undo() and not history.undo()
    assert serialize.dumps(history.graph) == start
    assert history.redo() and history.redo() and not history.redo()
    assert serialize.dumps(history.graph) == end


def test_connect_replaces_the_link_on_a_taken_input_in_one_step(history):
    other = history.push(AddNode("shapes.draw", (0, 300))).node_id
    history.push(Connect(Edge(other, "image", "save", "image")))
    assert history.graph.input_edge("save", "image") == Edge(other, "image", "save", "image")
    assert len(history.graph.edges) == 1
    history.undo()
    assert history.graph.edges == [Edge("shape", "image", "save", "image")]


def test_refused_connection_names_the_reason_and_changes_nothing(history):
    before = serialize.dumps(history.graph)
    number = history.push(AddNode("value.float", (0, 400))).node_id
    with pytest.raises(CommandError, match="type mismatch"):
        history.push(Connect(Edge(number, "value", "save", "image")))
    assert history.graph.input_edge("save", "image").src == "shape", "the refused link replaced nothing"
    first = history.push(AddNode("math.binary", (0, 500))).node_id
    second = history.push(AddNode("math.binary", (300, 500))).node_id
    history.push(Connect(Edge(first, "value", second, "a")))
    with pytest.raises(CommandError, match="cycle"):
        history.push(Connect(Edge(second, "value", first, "b")))
    for _ in range(4):
        history.undo()
    assert serialize.dumps(history.graph) == before
    assert not history.can_undo


def test_remove_node_takes_links_positions_and_reroutes_and_undo_restores_them(history):
    start = serialize.dumps(history.graph)
    history.push(AddReroute(Edge("shape", "image", "save", "image"), (200, 80), 0))
    history.push(SetLayout("Colour", "colours", "shape", "#ff0000"))
    history.push(Remove(nodes=["shape"]))
    graph = history.graph
    assert "shape" not in graph.nodes and graph.edges == []
    assert graph.layout["reroutes"] == {} and "shape" not in graph.layout["positions"]
    history.undo()
    assert graph.layout["reroutes"] == {"save.image": [[200.0, 80.0]]}
    history.undo()
    history.undo()
    assert serialize.dumps(graph) == start


def test_param_edits_of_one_gesture_are_one_step_and_values_are_checked(history):
    for value in (0.1, 0.2, 0.35):
        history.push(SetParam("shape", "size", value, gesture="drag-1"))
    history.push(SetParam("shape", "size", 0.4, gesture="drag-2"))
    assert len(history) == 2
    history.undo()
    assert history.graph.nodes["shape"].params["size"] == 0.35
    history.undo()
    assert history.graph.nodes["shape"].params["size"] == 0.3
    with pytest.raises(CommandError, match="shape.size: 7 is above the maximum"):
        history.push(SetParam("shape", "size", 7))
    with pytest.raises(CommandError, match="no param 'nope'"):
        history.push(SetParam("shape", "nope", 1))


def test_setting_an_absent_param_is_undone_by_removing_it(history):
    history.graph.nodes["save"].params.clear()
    history.push(SetParam("save", "prefix", "x"))
    history.undo()
    assert history.graph.nodes["save"].params == {}


def test_a_drag_is_one_move_step(history):
    for step in range(1, 6):
        history.push(Move(nodes={"shape": (10 * step, 0), "save": (320 + 10 * step, 0)}, gesture="g"))
    assert len(history) == 1
    assert history.graph.layout["positions"]["save"] == [370.0, 0.0]
    history.undo()
    assert history.graph.layout["positions"] == {"shape": [0, 0], "save": [320, 0]}


def test_mode_title_frame_and_move_frame(history):
    history.push(SetMode(["shape", "save"], "bypass"))
    history.push(SetTitle("shape", "Sun"))
    frame = history.push(AddFrame((-20, -40, 600, 300), "Inputs"))
    history.push(Move(frames={frame.frame_id: (0, 0)}, nodes={"shape": (20, 40)}))
    graph = history.graph
    assert [n.mode for n in graph] == ["bypass", "bypass"] and graph.nodes["shape"].title == "Sun"
    assert graph.layout["frames"]["frame"] == {
        "title": "Inputs",
        "colour": "#5c6bc0",
        "rect": [0, 0, 600, 300],
    }
    assert "mode" in serialize.to_dict(graph)["nodes"]["save"]


def test_convert_param_to_socket_and_back_unlinks(history):
    math_id = history.push(AddNode("math.binary", (0, 300))).node_id
    number = history.push(AddNode("value.float", (-300, 300))).node_id
    history.push(ConvertParam(math_id, "a", True))
    assert history.graph.layout["sockets"][math_id] == ["a"]
    history.push(Connect(Edge(number, "value", math_id, "a")))
    history.push(ConvertParam(math_id, "a", False))
    assert history.graph.input_edge(math_id, "a") is None
    assert math_id not in history.graph.layout["sockets"]
    with pytest.raises(CommandError, match="not a param that can take a link"):
        history.push(ConvertParam(math_id, "operation", True))
    history.undo()
    assert history.graph.input_edge(math_id, "a") is not None


def test_copy_paste_gives_new_ids_and_keeps_internal_links(history):
    clip = copy_nodes(history.graph, ["shape", "save"])
    assert is_clip(clip)
    paste = history.push(Paste(clip, (1000, 500)))
    assert paste.new_ids == {"shape": "shape_2", "save": "save_2"}
    graph = history.graph
    assert Edge("shape_2", "image", "save_2", "image") in graph.edges
    assert graph.layout["positions"]["shape_2"] == [1000, 500]
    assert graph.layout["positions"]["save_2"] == [1320, 500]
    assert graph.nodes["shape_2"].params == graph.nodes["shape"].params


def test_paste_of_only_the_sink_drops_the_outside_link(history):
    paste = history.push(Paste(copy_nodes(history.graph, ["save"]), (0, 0)))
    assert history.graph.incoming(paste.new_ids["save"]) == {}


def test_batch_is_one_step(history):
    add = AddNode("image.save", (600, 0))
    history.push(Batch("Add and connect", [add, Disconnect(history.graph.edges)]))
    assert len(history) == 1 and history.graph.edges == []
    history.undo()
    assert len(history.graph.nodes) == 2 and len(history.graph.edges) == 1


def test_clean_marker_follows_save_undo_and_lost_redo(history):
    assert history.is_clean
    history.push(SetParam("shape", "size", 0.2, gesture="g"))
    assert not history.is_clean
    history.mark_clean()
    history.push(SetParam("shape", "size", 0.25, gesture="g"))
    assert len(history) == 2, "an edit after a save never merges into the saved step"
    history.undo()
    assert history.is_clean
    history.undo()
    history.push(SetTitle("shape", "x"))
    assert not history.is_clean
    history.undo()
    assert not history.is_clean, "the saved state is no longer reachable"


def test_history_notifies_listeners(history):
    calls = []
    history.subscribe(lambda: calls.append(history.undo_label))
    history.push(SetTitle("shape", "x"))
    history.undo()
    assert calls == ["Rename", ""]
