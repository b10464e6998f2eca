"""The editor's Run queue and History: Run xN queues snapshots that all run (none replaced), seeds advance
by their "control after generate", the queue survives a restart, jobs can be cancelled and reordered, and
History shows what ran, opens its graph and compares two pictures."""

from __future__ import annotations

import json

from app.graph.layout_commands import SetLayout
from app.graph.model import Edge, Graph, Node
from app.jobs import JobStore, seeds
from tests.ui.run_nodes import WORKER_REGISTRY
from tests.ui.run_nodes import registry as run_registry

RUN_LIMIT_MS = 60_000


def _graph() -> Graph:
    graph = Graph()
    graph.add_node(Node("seed", "value.seed", params={"value": 7}))
    graph.add_node(Node("shape", "shapes.draw", params={"width": 32, "height": 32}))
    graph.add_node(Node("dark", "t.darken", params={"steps": 1}))
    graph.add_node(Node("save", "image.save", params={"prefix": "q"}))
    graph.connect(Edge("shape", "image", "dark", "image"))
    graph.connect(Edge("dark", "image", "save", "image"))
    for index, node_id in enumerate(graph.nodes):
        graph.set_layout_item("positions", node_id, [index * 260, 0])
    return graph


def _window(qtbot, tmp_path, graph=None):
    from app.ui.window import MainWindow

    win = MainWindow(run_registry(), graph or _graph(), worker_registry=WORKER_REGISTRY)
    win.runner.output_dir = tmp_path / "out"
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def _wait_idle(qtbot, win) -> None:
    qtbot.waitUntil(lambda: not win.queue.store.jobs(("pending", "running")), timeout=RUN_LIMIT_MS)


def test_run_three_times_queues_three_runs_with_advancing_seeds(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        win.editor.push(SetLayout("Seed control", seeds.LAYOUT_KEY, "seed.value", "increment"))
        win.run_controls.run_count.setValue(3)
        win.actions_by_name["run"].trigger()
        _wait_idle(qtbot, win)
        jobs = sorted(win.queue.store.jobs(), key=lambda j: j.id)
        assert [j.status for j in jobs] == ["done"] * 3
        assert [j.meta["seeds"]["seed.value"] for j in jobs] == [7, 8, 9]
        assert [json.loads(j.graph)["nodes"]["seed"]["params"]["value"] for j in jobs] == [7, 8, 9]
        assert win.editor.graph.nodes["seed"].params["value"] == 10  # what the next Run starts from
        assert json.loads(jobs[0].graph)["layout"]["seed_control"] == {"seed.value": "increment"}
        assert len(win.queue.store.artifacts(jobs[0].id)) == 1
        assert win.run_controls.queue_panel.list.count() == 3
        assert "#" in win.run_controls.queue_panel.list.item(0).text()
    finally:
        win.runner.close()


def test_pressing_run_while_a_run_is_in_flight_queues_instead_of_replacing(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        win.editor.graph.nodes["dark"].params["steps"] = 20
        win.editor.graph.nodes["dark"].params["delay"] = 0.02
        for amount in (0.2, 0.5, 0.8):
            win.editor.graph.nodes["dark"].params["amount"] = amount
            win.actions_by_name["run"].trigger()
        _wait_idle(qtbot, win)
        jobs = sorted(win.queue.store.jobs(), key=lambda j: j.id)
        assert [j.status for j in jobs] == ["done"] * 3
        assert len(list((tmp_path / "out").glob("*.png"))) == 3  # three pictures, none replaced
    finally:
        win.runner.close()


def test_pending_jobs_can_be_cancelled_and_reordered(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        win.editor.graph.nodes["dark"].params.update(steps=40, delay=0.05)
        first, second, third = win.queue.enqueue(3)
        qtbot.waitUntil(lambda: win.queue.current is not None, timeout=RUN_LIMIT_MS)
        win.queue.move(third, 0)
        assert [j.id for j in win.queue.store.jobs(("pending",))] == [third, second]
        win.queue.cancel(second)
        win.queue.cancel(first)  # the running one: cooperative cancel
        _wait_idle(qtbot, win)
        status = {j.id: j.status for j in win.queue.store.jobs()}
        assert status == {first: "cancelled", second: "cancelled", third: "done"}
    finally:
        win.runner.close()


def test_the_queue_and_history_survive_a_restart_and_open_their_graph(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        win.queue.enqueue(1)
        _wait_idle(qtbot, win)
    finally:
        win.runner.close()
        win.queue.close()
    graph = Graph()
    graph.add_node(Node("lone", "shapes.draw"))
    other = _window(qtbot, tmp_path, graph)
    try:
        history = other.run_controls.history
        assert history.list.count() == 1
        item = history.list.item(0)
        history.list.itemClicked.emit(item)
        assert (
            other.run_controls.preview.image is not None
            and "job #" in other.run_controls.preview.caption.text()
        )
        history.list.itemDoubleClicked.emit(item)
        assert set(other.editor.graph.nodes) == {"seed", "shape", "dark", "save"}
    finally:
        other.runner.close()


def test_compare_puts_two_pictures_side_by_side(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        win.editor.push(SetLayout("Seed control", seeds.LAYOUT_KEY, "seed.value", "increment"))
        win.editor.graph.nodes["dark"].params["amount"] = 0.1
        win.queue.enqueue(1)
        win.editor.graph.nodes["dark"].params["amount"] = 0.9
        win.queue.enqueue(1)
        _wait_idle(qtbot, win)
        history = win.run_controls.history
        assert history.list.count() == 2
        history.list.selectAll()
        dialog = history.compare()
        assert dialog is not None and dialog.windowTitle().startswith("Compare — ")
    finally:
        win.runner.close()


def test_a_job_left_running_by_a_dead_editor_is_queued_again(tmp_path, monkeypatch):
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add_batch(["{}"])
    store.claim("dead-editor", lease_seconds=0.0)
    assert store.recover() and store.jobs()[0].status == "pending"


def test_the_inspector_sets_a_seeds_control_and_refuses_text_that_is_no_number(qtbot, tmp_path):
    win = _window(qtbot, tmp_path)
    try:
        win.editor.select_nodes(["seed"])
        win.inspector.show_node("seed")
        win.inspector.widgets["value@control"].setCurrentText("randomize")
        assert win.editor.graph.layout[seeds.LAYOUT_KEY] == {"seed.value": "randomize"}
        win.editor.history.undo()
        assert not win.editor.graph.layout.get(seeds.LAYOUT_KEY)
        win.inspector.show_node("seed")
        field = win.inspector.widgets["value"]
        field.setText("12x")
        field.textEdited.emit("12x")
        assert win.editor.graph.nodes["seed"].params["value"] == 7  # not taken
        assert "not taken" in field.toolTip() and field.styleSheet()
        field.editingFinished.emit()
        assert field.text() == "7" and not field.styleSheet()
        field.setText("42")
        field.textEdited.emit("42")
        assert win.editor.graph.nodes["seed"].params["value"] == 42
    finally:
        win.runner.close()
