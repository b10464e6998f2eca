"""Running graphs from the editor with the real worker process (torch-free test nodes): badges, progress,
pictures, Live mode, Cancel, Run to here, errors and blocked nodes, and a UI thread that keeps running."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication

from app.graph.commands import SetParam
from app.graph.model import Edge, Graph, Node
from app.ui import run_state
from tests.ui.run_nodes import WORKER_REGISTRY
from tests.ui.run_nodes import registry as run_registry

RUN_LIMIT_MS = 60_000


def _graph(extra: bool = False) -> Graph:
    graph = Graph()
    graph.add_node(Node("shape", "shapes.draw", params={"width": 64, "height": 64}))
    graph.add_node(Node("dark", "t.darken", params={"steps": 2}))
    graph.add_node(Node("save", "image.save", params={"prefix": "live"}))
    graph.connect(Edge("shape", "image", "dark", "image"))
    graph.connect(Edge("dark", "image", "save", "image"))
    if extra:
        graph.add_node(Node("other", "shapes.draw", params={"width": 32, "height": 32, "shape": "square"}))
        graph.add_node(Node("show", "image.preview"))
        graph.connect(Edge("other", "image", "show", "image"))
    for index, node_id in enumerate(graph.nodes):
        graph.set_layout_item("positions", node_id, [index * 300, 0])
    return graph


@pytest.fixture
def make_window(qtbot, tmp_path):
    from app.ui.window import MainWindow

    made = []

    def make(graph: Graph):
        win = MainWindow(run_registry(), graph, worker_registry=WORKER_REGISTRY)
        win.runner.output_dir = tmp_path / "out"
        qtbot.addWidget(win)
        win.resize(1200, 800)
        with qtbot.waitActive(win):  # window-wide shortcuts (Ctrl+Enter) need the active window
            win.show()
            win.activateWindow()
        win.view.frame_all()
        win.view.setFocus()
        made.append(win)
        return win

    yield make
    for win in made:
        win.runner.close()


def _states(win) -> dict[str, str]:
    return {node_id: item.run.state for node_id, item in win.editor.scene.nodes.items()}


def _run_and_wait(qtbot, win, start=None) -> dict:
    with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS) as done:
        (start or win.actions_by_name["run"].trigger)()
    return done.args[0]


def _events(win, run_id: int, kind: str) -> list[dict]:
    return [e for e in win.runner.log if e.get("run") == run_id and e["event"] == kind]


def test_run_paints_cached_stale_and_running_states(qtbot, make_window):
    win = make_window(_graph())
    assert set(_states(win).values()) == {"stale"}
    assert win.editor.scene.nodes["dark"].toolTip().endswith("\n\nWill run: never ran")
    done = _run_and_wait(
        qtbot, win, lambda: qtbot.keyClick(win.view, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    )
    assert done["status"] == "ok"
    assert _states(win) == {"shape": "cached", "dark": "cached", "save": "cached"}
    # pictures: small thumbnails on the nodes (the Save node shows the picture it saved), full size in the dock
    for node_id in ("shape", "dark", "save"):
        thumb = win.editor.scene.nodes[node_id].thumb
        assert thumb is not None and max(thumb.width(), thumb.height()) <= run_state.THUMB_MAX
    assert win.run_controls.preview.image is not None and win.run_controls.preview.image.width() == 64
    assert (win.runner.output_dir / "live_00001.png").exists()

    win.editor.push(SetParam("dark", "amount", 0.25))
    qtbot.waitUntil(lambda: _states(win)["dark"] == "stale", timeout=2000)
    assert _states(win) == {"shape": "cached", "dark": "stale", "save": "stale"}
    assert (
        win.editor.scene.nodes["dark"].toolTip().endswith("\n\nWill run: param changed: amount 0.5 -> 0.25")
    )
    assert win.editor.scene.nodes["save"].toolTip().endswith("\n\nWill run: input changed: image (from dark)")

    win.editor.push(SetParam("dark", "steps", 6))
    win.editor.push(SetParam("dark", "delay", 0.15))
    seen: list[tuple[str, int, int]] = []
    win.runner.picture.connect(lambda node, picture, caption: seen.append((node, caption)))
    win.actions_by_name["run"].trigger()
    qtbot.waitUntil(lambda: win.editor.scene.nodes["dark"].run.step >= 2, timeout=RUN_LIMIT_MS)
    item = win.editor.scene.nodes["dark"]
    assert item.run.state == "running" and item.run.total == 6 and "\n\nRunning: step" in item.toolTip()
    assert _states(win)["shape"] == "cached" and _states(win)["save"] == "stale"
    win.grab()  # paints the running badge and progress bar without errors
    qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS).wait()
    assert set(_states(win).values()) == {"cached"}
    assert any(node == "dark" and "step" in caption and "/6" in caption for node, caption in seen)


def test_live_mode_runs_once_after_a_burst_of_edits(qtbot, make_window):
    win = make_window(_graph())
    _run_and_wait(qtbot, win)
    runs = len(win.runner.submitted)
    win.actions_by_name["live"].trigger()
    assert win.runner.live
    qtbot.wait(500)
    assert len(win.runner.submitted) == runs  # nothing stale: turning Live on runs nothing
    with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS):
        for amount in (0.1, 0.2, 0.3, 0.4, 0.45):
            win.editor.push(SetParam("dark", "amount", amount, gesture="drag"))
            qtbot.wait(40)
    qtbot.wait(700)
    assert len(win.runner.submitted) == runs + 1
    assert set(_states(win).values()) == {"cached"}
    run_id = win.runner.submitted[-1][0]
    assert [e["node"] for e in _events(win, run_id, "cached")] == ["shape"]

    # typing in a text field, with pauses longer than the param debounce: still one run at the end
    with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS):
        for text in ("a", "a r", "a re", "a red"):
            win.editor.push(SetParam("dark", "note", text, gesture="typing"))
            qtbot.wait(400)
    qtbot.wait(1200)
    assert len(win.runner.submitted) == runs + 2


def test_a_live_edit_cancels_the_stale_run_in_flight_and_restarts_from_cached_nodes(qtbot, make_window):
    win = make_window(_graph())
    win.editor.push(SetParam("dark", "steps", 100))
    win.editor.push(SetParam("dark", "delay", 0.1))
    win.actions_by_name["live"].trigger()
    qtbot.waitUntil(lambda: win.editor.scene.nodes["dark"].run.step >= 1, timeout=RUN_LIMIT_MS)
    first = win.runner.run_id
    win.editor.push(SetParam("dark", "steps", 3))
    qtbot.waitUntil(lambda: len(win.runner.submitted) == 2, timeout=RUN_LIMIT_MS)
    qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS).wait()
    assert (
        next(e for e in win.runner.log if e["event"] == "run_done" and e["run"] == first)["status"]
        == "cancelled"
    )
    second = win.runner.submitted[-1][0]
    assert [e["node"] for e in _events(win, second, "cached")] == ["shape"]
    assert set(_states(win).values()) == {"cached"}


def test_cancel_stops_within_one_step_and_leaves_upstream_cached(qtbot, make_window):
    win = make_window(_graph())
    win.editor.push(SetParam("dark", "steps", 200))
    win.editor.push(SetParam("dark", "delay", 0.25))
    win.actions_by_name["run"].trigger()
    qtbot.waitUntil(lambda: win.editor.scene.nodes["dark"].run.step >= 1, timeout=RUN_LIMIT_MS)
    assert win.actions_by_name["cancel"].isEnabled()
    seen_step = win.editor.scene.nodes["dark"].run.step
    with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS) as done:
        qtbot.keyClick(win.view, Qt.Key.Key_Escape)
    assert done.args[0]["status"] == "cancelled"
    steps = [e["step"] for e in win.runner.log if e["event"] == "progress" and e["node"] == "dark"]
    assert max(steps) <= seen_step + 1
    assert _states(win) == {"shape": "cached", "dark": "stale", "save": "stale"}
    assert not win.actions_by_name["cancel"].isEnabled()


def test_run_to_here_from_the_context_menu_runs_only_what_the_node_needs(qtbot, make_window):
    win = make_window(_graph(extra=True))
    view = win.view
    centre = view.mapFromScene(win.editor.scene.nodes["dark"].mapToScene(40, 10))
    QApplication.sendEvent(
        view.viewport(),
        QContextMenuEvent(QContextMenuEvent.Reason.Mouse, centre, view.viewport().mapToGlobal(centre)),
    )
    menu = QApplication.activePopupWidget()
    assert menu is not None and win.editor.selected_nodes() == ["dark"]
    action = next(a for a in menu.actions() if a.text() == "Run to here")
    with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS):
        action.trigger()
        menu.close()
    run_id, targets = win.runner.submitted[-1]
    assert targets == ["dark"]
    assert [e["node"] for e in _events(win, run_id, "started")] == ["shape", "dark"]
    assert _states(win) == {
        "shape": "cached",
        "dark": "cached",
        "save": "stale",
        "other": "stale",
        "show": "stale",
    }


def test_a_failing_node_shows_its_error_and_blocks_its_descendants(qtbot, make_window):
    graph = _graph()
    graph.add_node(Node("bad", "t.fail"))
    graph.add_node(Node("after", "t.darken"))
    graph.add_node(Node("show", "image.preview"))
    graph.connect(Edge("shape", "image", "bad", "image"))
    graph.connect(Edge("bad", "image", "after", "image"))
    graph.connect(Edge("after", "image", "show", "image"))
    win = make_window(graph)
    done = _run_and_wait(qtbot, win)
    assert done["status"] == "error"
    assert _states(win) == {
        "shape": "cached",
        "dark": "cached",
        "save": "cached",
        "bad": "error",
        "after": "blocked",
        "show": "blocked",
    }
    assert win.editor.scene.nodes["bad"].toolTip().endswith("\n\nError: asked to fail")
    assert "waits for 'bad'" in win.editor.scene.nodes["after"].toolTip()
    rows = win.run_controls.errors.grouped()["bad"]
    assert rows == [("run failed: asked to fail", ["input image: ndarray, shape 1x64x64x3, float32"])]
    assert win.run_controls.errors_dock.windowTitle() == "Errors (1)"
    win.run_controls.errors._clicked(win.run_controls.errors.topLevelItem(0))
    assert win.editor.selected_nodes() == ["bad"]

    win.editor.push(SetParam("bad", "fail", False))  # fixed: the error leaves the panel and the badges
    qtbot.waitUntil(lambda: _states(win)["bad"] == "stale", timeout=2000)
    assert _states(win)["after"] == "stale" and win.run_controls.errors.count() == 0


def test_every_validation_problem_is_listed_at_once_grouped_by_node(qtbot, make_window):
    graph = _graph()
    graph.add_node(Node("load", "image.load", params={"path": "no/such/picture.png"}))
    graph.add_node(Node("lonely", "image.save"))
    graph.add_node(Node("dangling", "t.darken"))
    win = make_window(graph)
    groups = win.run_controls.errors.grouped()
    assert {"load", "lonely", "dangling"} <= set(groups)
    assert any("picture.png" in message for message, _ in groups["load"])
    assert win.run_controls.errors.topLevelItemCount() == len(groups)
    assert {_states(win)[n] for n in ("load", "lonely", "dangling")} == {"error"}
    row = win.run_controls.errors.topLevelItem(list(groups).index("lonely")).child(0)
    win.run_controls.errors._clicked(row)
    assert win.editor.selected_nodes() == ["lonely"]


def test_the_ui_thread_keeps_running_during_a_run(qtbot, make_window):
    win = make_window(_graph())
    win.editor.push(SetParam("dark", "steps", 8))
    win.editor.push(SetParam("dark", "delay", 0.2))
    ticks: list[tuple[bool, int]] = []
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: ticks.append((win.runner.running, win.editor.scene.nodes["dark"].run.step)))
    timer.start()
    _run_and_wait(qtbot, win)
    timer.stop()
    during = [step for running, step in ticks if running]
    assert len(during) >= 8  # the event loop kept its timer going while the worker ran the node
    assert len({step for step in during if step}) >= 3  # and painted progress as it came


def test_right_click_off_the_nodes_opens_the_add_node_menu_not_a_nodes_menu(qtbot, make_window):
    win = make_window(_graph())
    empty = QPoint(5, 5)
    assert win.editor.scene.node_at(win.view.mapToScene(empty)) is None
    QApplication.sendEvent(
        win.view.viewport(),
        QContextMenuEvent(QContextMenuEvent.Reason.Mouse, empty, win.view.viewport().mapToGlobal(empty)),
    )
    popup = QApplication.activePopupWidget()
    assert popup is not None and "Run to here" not in [a.text() for a in popup.actions()]
    assert "image" in [a.text() for a in popup.actions()]  # categories
    popup.close()


def test_cancel_twice_stops_a_node_that_ignores_cancel_and_the_disk_cache_survives(qtbot, make_window):
    graph = _graph()
    graph.add_node(Node("slow", "t.stubborn"))
    graph.disconnect(Edge("shape", "image", "dark", "image"))
    graph.connect(Edge("shape", "image", "slow", "image"))
    graph.connect(Edge("slow", "image", "dark", "image"))
    win = make_window(graph)
    win.actions_by_name["run"].trigger()
    qtbot.waitUntil(lambda: _states(win)["slow"] == "running", timeout=RUN_LIMIT_MS)
    with qtbot.waitSignal(win.runner.finished, timeout=10_000) as done:
        qtbot.keyClick(win.view, Qt.Key.Key_Escape)
        qtbot.keyClick(win.view, Qt.Key.Key_Escape)
    assert done.args[0]["status"] == "killed" and not win.runner.worker.alive
    assert _states(win)["shape"] == "cached"  # from the disk cache: the worker's memory is gone
    assert _states(win)["slow"] == "stale"


def test_out_of_memory_errors_say_what_to_try(qtbot, make_window):
    win = make_window(_graph())
    win.runner.tracker.submitted(win.editor.graph)
    event = {
        "event": "error",
        "node": "dark",
        "message": "OutOfMemoryError: CUDA out of memory.",
        "inputs": {},
    }
    win.runner._handle({**event, "run": None})
    win.runner.refresh()
    message, details = win.run_controls.errors.grouped()["dark"][0]
    assert message == "run failed: OutOfMemoryError: CUDA out of memory."
    assert any("smaller width/height" in d for d in details) and any("tiled decode" in d for d in details)
    assert any("CPU offload" in d for d in details)
    assert _states(win)["save"] == "blocked"


def test_live_edits_show_results_without_writing_files_and_run_saves_once(qtbot, make_window, tmp_path):
    win = make_window(_graph())
    out = tmp_path / "out"
    win.actions_by_name["live"].trigger()
    with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS):
        win.editor.push(SetParam("dark", "amount", 0.3, gesture="drag"))
    assert not list(out.rglob("*.png")) and "save" in win.runner.pictures  # shown, not written
    win.actions_by_name["live"].trigger()
    for _ in range(2):  # Run writes the picture once; an unchanged second Run names the same file
        _run_and_wait(qtbot, win)
        assert [p.name for p in out.glob("*.png")] == ["live_00001.png"]
        assert win.runner.saved["save"] == [str(out / "live_00001.png")]
