"""The window's run controls around a Runner and its RunQueue: a toolbar (Run with a xN count, Cancel, Live),
a Run menu, "Run to here" in a node's context menu, the Preview, Errors, Queue and History docks, and status
bar fields for the device, the memory in use and what the worker is doing (model loads and unloads as they
happen). Imports Qt only; never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QDockWidget, QLabel, QMenu, QSpinBox

from app.ui.edit_tools import EditTools
from app.ui.errors_panel import ErrorsPanel
from app.ui.preview_dock import PreviewDock
from app.ui.queue_panel import HistoryPanel, QueuePanel

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
        "run": lambda: window.queue.enqueue(window.run_controls.run_count.value()),
        "cancel": cancel,
        "live": lambda: window.runner.set_live(window.actions_by_name["live"].isChecked()),
    }


class RunControls:
    """What the window shows and offers around its Runner, owned by the window (`window.run_controls`):
    the Run toolbar and menu, the Preview and Errors docks, the status bar fields, and a node's context menu.
    """

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        runner, actions = window.runner, window.actions_by_name
        actions["run"].setText("Run")
        actions["run"].setToolTip(
            "Queue a run of the graph as it is now (Ctrl+Enter; xN queues N, seeds advancing as each seed's "
            "'control after generate' says); cached nodes do not run again"
        )
        actions["cancel"].setText("Cancel")
        actions["cancel"].setToolTip(
            "Stop at the running node's next step (Esc); press twice to stop at once"
        )
        actions["cancel"].setEnabled(False)
        live = actions["live"]
        live.setText("Live")
        live.setCheckable(True)
        live.setToolTip("Run again shortly after each edit, from the cached nodes")
        toolbar = window.addToolBar("Run")
        toolbar.setObjectName("run_toolbar")
        menu = window.menuBar().addMenu("&Run")
        self.run_count = QSpinBox()
        self.run_count.setRange(1, 100)
        self.run_count.setPrefix("×")
        self.run_count.setToolTip("Runs queued per Run (seeds advance between them)")
        for name in RUN_ACTIONS:
            toolbar.addAction(actions[name])
            menu.addAction(actions[name])
            if name == "run":
                toolbar.addWidget(self.run_count)
        runner.busy.connect(lambda busy: actions["cancel"].setEnabled(busy))

        self.preview = PreviewDock(window.editor, runner)
        self.preview.tools = EditTools(window.editor, runner, lambda: window.path)
        self.errors = ErrorsPanel(window.editor, runner)
        self.preview_dock = self._dock("Preview", "preview", self.preview)
        self.errors_dock = self._dock("Errors", "errors", self.errors, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.queue_panel = QueuePanel(window.queue)
        self.history = HistoryPanel(window.queue, self._show_file, window.open_snapshot)
        self.queue_dock = self._dock(
            "Queue", "queue", self.queue_panel, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.history_dock = self._dock(
            "History", "history", self.history, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        window.resizeDocks([self.errors_dock], [140], Qt.Orientation.Vertical)
        runner.states_changed.connect(self._errors_title)
        self._errors_title()

        self.device_label = QLabel("device: not started")
        self.memory_label = QLabel("")
        self.activity_label = QLabel("")
        bar = window.statusBar()
        for label in (self.activity_label, self.memory_label, self.device_label):
            bar.addPermanentWidget(label)
        for dock in window.findChildren(QDockWidget):  # View menu: show or hide every dock
            window.view_menu.addAction(dock.toggleViewAction())
        runner.message.connect(self.activity_label.setText)
        runner.device.connect(self._device)
        window.editor.node_menu = self.node_menu

    def _dock(
        self, title: str, name: str, widget: Any, area=Qt.DockWidgetArea.RightDockWidgetArea
    ) -> QDockWidget:
        dock = QDockWidget(title, self.window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.window.addDockWidget(area, dock)
        return dock

    def _show_file(self, path: str, caption: str) -> None:
        self.preview.show_picture("", QImage(path), caption, path=path)
        self.preview_dock.raise_()

    def _errors_title(self) -> None:
        count = self.errors.count()
        self.errors_dock.setWindowTitle(f"Errors ({count})" if count else "Errors")

    def _device(self, info: dict[str, Any]) -> None:
        self.device_label.setText(f"device: {info.get('device', '?')}")
        memory = info.get("memory")
        if memory:
            total = info.get("memory_total")
            where = "GPU memory" if info.get("memory_kind") == "cuda" else "worker memory"
            of = f" of {total / 2**30:.1f} GiB" if total else ""
            self.memory_label.setText(f"{where}: {memory / 2**30:.2f} GiB{of}")

    def node_menu(self, node_id: str, pos: QPoint) -> QMenu:
        """The context menu of a node: Run to here, and the node edits (bypass, mute)."""
        window = self.window
        menu = QMenu(window.view)
        menu.addAction("Run to here", lambda: window.runner.run_to(node_id))
        files = getattr(window.runner, "saved", {}).get(node_id, [])
        if files:  # the pictures this node's last run wrote (Save Image)
            path = files[0]
            menu.addAction("Open picture", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(path)))
            folder = str(Path(path).parent)
            menu.addAction("Show in folder", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(folder)))
        menu.addSeparator()
        for name in ("bypass", "mute"):
            menu.addAction(window.actions_by_name[name])
        menu.popup(pos)
        return menu
