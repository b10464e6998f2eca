"""The window's run controls around a Runner: a toolbar (Run, Cancel, Live), a Run menu, "Run to here" in a
node's context menu, the Preview and Errors docks, and status bar fields for the device, the memory in use
and what the worker is doing (model loads and unloads as they happen). Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QMenu

from app.ui.errors_panel import ErrorsPanel
from app.ui.preview_dock import PreviewDock

if TYPE_CHECKING:
    from app.ui.window import MainWindow

RUN_ACTIONS = ("run", "cancel", "live")


def handlers(window: MainWindow) -> dict[str, Any]:
    """Keymap action name -> handler for the run actions."""

    def cancel() -> None:  # Esc: close the node search, else end a canvas gesture, else cancel the run
        search = window.editor.search
        if search.isVisible():
            search.hide()
            window.view.setFocus()
        elif not window.view.gestures.cancel():
            window.runner.cancel()

    return {
        "run": lambda: window.runner.run(),
        "cancel": cancel,
        "live": lambda: window.runner.set_live(window.actions_by_name["live"].isChecked()),
    }


def attach(window: MainWindow) -> None:
    """Add the run toolbar, menu, docks and status fields to `window` (its actions exist already)."""
    runner, actions = window.runner, window.actions_by_name
    actions["run"].setText("Run")
    actions["run"].setToolTip("Run the graph's outputs (Ctrl+Enter); cached nodes do not run again")
    actions["cancel"].setText("Cancel")
    actions["cancel"].setToolTip("Stop at the running node's next step (Esc); press twice to stop at once")
    actions["cancel"].setEnabled(False)
    live = actions["live"]
    live.setText("Live")
    live.setCheckable(True)
    live.setToolTip("Run again shortly after each edit, from the cached nodes")
    toolbar = window.addToolBar("Run")
    toolbar.setObjectName("run_toolbar")
    menu = window.menuBar().addMenu("&Run")
    for name in RUN_ACTIONS:
        toolbar.addAction(actions[name])
        menu.addAction(actions[name])
    runner.busy.connect(lambda busy: actions["cancel"].setEnabled(busy))

    window.preview = PreviewDock(window.editor, runner)
    window.errors = ErrorsPanel(window.editor, runner)
    window.preview_dock = _dock(window, "Preview", "preview", window.preview)
    window.errors_dock = _dock(
        window, "Errors", "errors", window.errors, Qt.DockWidgetArea.BottomDockWidgetArea
    )
    window.resizeDocks([window.errors_dock], [140], Qt.Orientation.Vertical)
    runner.states_changed.connect(lambda: _errors_title(window))
    _errors_title(window)

    window.device_label = QLabel("device: not started")
    window.memory_label = QLabel("")
    window.activity_label = QLabel("")
    bar = window.statusBar()
    bar.addPermanentWidget(window.activity_label)
    bar.addPermanentWidget(window.memory_label)
    bar.addPermanentWidget(window.device_label)
    runner.message.connect(window.activity_label.setText)
    runner.device.connect(lambda info: _device(window, info))
    window.editor.node_menu = lambda node_id, pos: node_menu(window, node_id, pos)


def _dock(window: MainWindow, title: str, name: str, widget: Any, area=Qt.DockWidgetArea.RightDockWidgetArea):
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    dock.setWidget(widget)
    window.addDockWidget(area, dock)
    return dock


def _errors_title(window: MainWindow) -> None:
    count = window.errors.count()
    window.errors_dock.setWindowTitle(f"Errors ({count})" if count else "Errors")


def _device(window: MainWindow, info: dict[str, Any]) -> None:
    window.device_label.setText(f"device: {info.get('device', '?')}")
    memory = info.get("memory")
    if memory:
        total = info.get("memory_total")
        where = "GPU memory" if info.get("memory_kind") == "cuda" else "worker memory"
        of = f" of {total / 2**30:.1f} GiB" if total else ""
        window.memory_label.setText(f"{where}: {memory / 2**30:.2f} GiB{of}")


def node_menu(window: MainWindow, node_id: str, pos: QPoint) -> QMenu:
    """The context menu of a node: Run to here, and the node edits (bypass, mute)."""
    menu = QMenu(window.view)
    menu.addAction("Run to here", lambda: window.runner.run_to(node_id))
    menu.addSeparator()
    for name in ("bypass", "mute"):
        menu.addAction(window.actions_by_name[name])
    menu.popup(pos)
    return menu
