"""MainWindow: canvas, inspector dock, menus from the keymap, and files (new, open, save, recent,
autosave with crash recovery, dropped graph files and PNGs). The title shows unsaved changes.

Dialogs go through small methods (`ask_save_changes`, `ask_recover`, `choose_open_path`, ...) so
tests can answer them. Imports Qt only; never torch.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox

from app.engine.worker import DEFAULT_REGISTRY
from app.files import FileProblem, FileResolver, input_dirs
from app.graph import serialize
from app.graph.model import Graph
from app.graph.spec import PATH_KINDS_READ
from app.interop import comfyui
from app.jobs import Job
from app.registry import Registry
from app.ui import document, run_ui, subgraph_dialog
from app.ui.editor import Editor
from app.ui.inspector import Inspector
from app.ui.keymap import load_keymap
from app.ui.run_queue import RunQueue
from app.ui.runner import Runner

AUTOSAVE_MS = 60_000
LABELS = {"paste_links": "Paste with links"}  # menu names that are not the action name capitalised


def outside_paths(graph: Graph, registry: Registry, folder: Path) -> list[str]:
    """The input files `graph` names that lie outside `folder` and the working folder."""
    resolver = FileResolver(base_dirs=input_dirs(folder), confined=True)
    found = []
    for node in graph:
        spec = registry.get(node.type)
        for param in spec.params if spec else ():
            value = node.params.get(param.name)
            if param.path in PATH_KINDS_READ and isinstance(value, str) and value:
                try:
                    resolver.resolve(param.path, value)
                except FileProblem as error:
                    if "outside the graph's folders" in str(error):
                        found.append(value)
    return found


GRAPH_FILTER = "Graphs (*.json *.png);;All files (*)"


class MainWindow(QMainWindow):
    def __init__(
        self,
        registry: Registry,
        graph: Graph | None = None,
        path: Path | None = None,
        worker_registry: str = DEFAULT_REGISTRY,
    ) -> None:
        """`worker_registry` ("module:function") builds the same registry in the worker process."""
        super().__init__()
        self.registry = registry
        self.path = path
        self.source_note = ""
        self.editor = Editor(registry, graph)
        self.view = self.editor.view
        self.view.on_drop_file = self.open_path
        self.setCentralWidget(self.view)
        self.inspector = Inspector(self.editor)
        dock = QDockWidget("Inspector", self)
        dock.setObjectName("inspector")
        dock.setWidget(self.inspector)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.inspector.setMinimumWidth(280)
        self.resizeDocks([dock], [340], Qt.Orientation.Horizontal)
        self.runner = Runner(self.editor, worker_registry=worker_registry)
        self.runner.set_graph_folder(path.parent if path else None)
        self.queue = RunQueue(self.editor, self.runner)
        self.runner.too_large.connect(self.ask_run_large)
        self.editor.ask_subgraph = self.ask_subgraph
        self.editor.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.editor.history.subscribe(self.update_title)
        self.actions_by_name: dict[str, QAction] = {}
        self._build_actions()
        self._build_menus()
        self.run_controls = run_ui.RunControls(self)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        self.resize(1400, 860)
        self.update_title()

    # -- actions and menus ------------------------------------------------------------------------
    def _build_actions(self) -> None:
        keymap = load_keymap()
        handlers = {
            **self.editor.actions,
            "new": self.new,
            "open": self.open_dialog,
            "save": self.save,
            "save_as": self.save_as,
            "quit": self.close,
            **run_ui.handlers(self),
        }
        for scope, entries in keymap.items():
            owner = self.view if scope == "canvas" else self
            for name, keys in entries.items():
                if name not in handlers:
                    continue
                action = QAction(LABELS.get(name, name.replace("_", " ").capitalize()), owner)
                action.setShortcuts([QKeySequence(k) for k in keys])
                if scope == "canvas":
                    action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                action.triggered.connect(lambda _=False, run=handlers[name]: run())
                owner.addAction(action)
                self.actions_by_name[name] = action

    def _build_menus(self) -> None:
        menus = self.menuBar()
        files = menus.addMenu("&File")
        for name in ("new", "open", "save", "save_as"):
            files.addAction(self.actions_by_name[name])
        self.recent_menu = files.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        files.addSeparator()
        files.addAction(self.actions_by_name["quit"])
        edit = menus.addMenu("&Edit")
        names = (
            "undo",
            "redo",
            None,
            "cut",
            "copy",
            "paste",
            "paste_links",
            "duplicate",
            "delete",
            None,
            "select_all",
        )
        for name in names:
            edit.addSeparator() if name is None else edit.addAction(self.actions_by_name[name])
        node = menus.addMenu("&Node")
        names = ("search", "bypass", "mute", "frame_nodes", None, "make_subgraph", "unpack_subgraph")
        for name in (*names, "enter_subgraph", "leave_subgraph"):
            if name is None:
                node.addSeparator()
                continue
            node.addAction(self.actions_by_name[name])
        view = menus.addMenu("&View")
        for name in ("frame_selected", "frame_all", "minimap"):
            view.addAction(self.actions_by_name[name])
        pans = view.addAction("Left-drag pans")
        pans.setCheckable(True)
        pans.setToolTip("Left-drag on empty canvas pans the view (Shift+drag still selects); off: it selects")
        pans.setChecked(bool(document.preferences().get("left_drag_pans", False)))
        self.view.left_drag_pans = pans.isChecked()
        pans.toggled.connect(self._left_drag_pans)
        self.actions_by_name["left_drag_pans"] = pans
        view.addSeparator()
        self.view_menu = view  # the docks add their show/hide toggles here

    def _left_drag_pans(self, on: bool) -> None:
        self.view.left_drag_pans = on
        try:
            document.set_preference("left_drag_pans", on)
        except OSError as error:
            self.statusBar().showMessage(f"could not save the setting: {error}", 5000)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in document.recent_files():
            self.recent_menu.addAction(str(path), lambda p=path: self.open_path(str(p)))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def update_title(self) -> None:
        name = self.path.name if self.path else (self.source_note or "untitled")
        dirty = "" if self.editor.history.is_clean else "*"
        self.setWindowTitle(f"{name}{dirty} — Nodeloom")
        self.actions_by_name["undo"].setEnabled(self.editor.history.can_undo)
        self.actions_by_name["redo"].setEnabled(self.editor.history.can_redo)

    # -- dialogs (tests replace these) ------------------------------------------------------------------
    def ask_save_changes(self) -> str:
        """'save', 'discard' or 'cancel'."""
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self,
            "Unsaved changes",
            "Save the changes to this graph first?",
            buttons.Save | buttons.Discard | buttons.Cancel,
        )
        return {buttons.Save: "save", buttons.Discard: "discard"}.get(answer, "cancel")

    def ask_recover(self, document_path: Path | None) -> bool:
        where = f" of {document_path}" if document_path else ""
        text = f"Nodeloom did not close cleanly. Restore the unsaved graph{where}?"
        return QMessageBox.question(self, "Recover unsaved work", text) == QMessageBox.StandardButton.Yes

    def ask_outside_paths(self, paths: list[str]) -> bool:
        """Whether a graph from a PNG may read these input files outside its folder."""
        listing = "\n".join(paths[:8]) + ("\n…" if len(paths) > 8 else "")
        text = f"The graph in this picture reads files outside its folder:\n{listing}\nAllow it to read them?"
        return (
            QMessageBox.question(self, "Files outside the graph's folder", text)
            == QMessageBox.StandardButton.Yes
        )

    def ask_subgraph(self, nodes: list[str]) -> subgraph_dialog.Choice | None:
        """Make Subgraph: its name and what it exposes, asked in a dialog."""
        name, ticked, _, _ = Editor.ask_subgraph(self.editor, nodes)
        return subgraph_dialog.ask(self, self.editor.graph, self.registry, nodes, name, ticked)

    def ask_run_large(self, why: str) -> None:
        """The run was refused by the memory estimate: ask whether to run it anyway."""
        text = f"{why.split(': make ')[0]}.\n\nRun it anyway? The machine may slow down or the run may fail."
        answer = QMessageBox.question(self, "Larger than this device", text)
        if answer == QMessageBox.StandardButton.Yes:
            self.runner.run_anyway()

    def choose_open_path(self) -> str | None:
        return QFileDialog.getOpenFileName(self, "Open graph", "", GRAPH_FILTER)[0] or None

    def choose_save_path(self) -> str | None:
        return QFileDialog.getSaveFileName(self, "Save graph", "", "Graphs (*.json)")[0] or None

    def warn(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)
        QMessageBox.warning(self, "Nodeloom", text)

    # -- files --------------------------------------------------------------------------------------
    def _maybe_save(self) -> bool:
        """Whether the current graph may be replaced or closed (asks when there are unsaved changes)."""
        if self.editor.history.is_clean:
            return True
        answer = self.ask_save_changes()
        if answer == "save":
            return self.save()
        return answer == "discard"

    def _show(
        self,
        graph: Graph,
        path: Path | None,
        note: str = "",
        clean: bool = True,
        folder: Path | None = None,
        confined: bool = False,
    ) -> None:
        """Show `graph`; its relative input files resolve in `folder` (default: the file's own)."""
        self.editor.set_graph(graph)
        self.path, self.source_note = path, note
        self.runner.set_graph_folder(folder or (path.parent if path else None), confined)
        if clean:
            self.editor.history.mark_clean()
        else:
            self.editor.history.mark_dirty()
        self.view.frame_readable()
        self.update_title()

    def new(self) -> None:
        if self._maybe_save():
            self._show(Graph(), None)

    def open_dialog(self) -> None:
        path = self.choose_open_path()
        if path:
            self.open_path(path)

    def open_snapshot(self, job: Job) -> bool:
        """Open the graph a queued run ran (from the History dock), as an unsaved graph."""
        if not self._maybe_save():
            return False
        try:
            graph = serialize.loads(job.graph, self.registry, source=f"<job #{job.id}>")
        except serialize.GraphFileError as error:
            self.warn(str(error))
            return False
        self._show(graph, None, note=f"the graph of job #{job.id}")
        return True

    def open_path(self, path: str) -> bool:
        """Open a graph file, the graph a PNG carries, or a ComfyUI workflow (imported on the fly). The last
        two are saved elsewhere, never over the file they came from."""
        if not self._maybe_save():
            return False
        try:
            graph, report = comfyui.load_graph(path, self.registry)
        except serialize.GraphFileError as error:
            self.warn(str(error))
            return False
        source = Path(path)
        if report is not None or source.suffix.lower() == ".png":
            outside = outside_paths(graph, self.registry, source.parent)
            confined = bool(outside) and not self.ask_outside_paths(outside)
            note = f"{source.name} ({'ComfyUI workflow' if report is not None else 'graph from image'})"
            self._show(graph, None, note=note, folder=source.parent, confined=confined)
        else:
            self._show(graph, source)
            document.add_recent(source)
        message = f"opened {path}"
        if report is not None:
            message = f"imported ComfyUI workflow {source.name}: " + "; ".join(report.summary())
        self.statusBar().showMessage(message, 15000)
        return True

    def save(self) -> bool:
        while self.editor.leave_subgraph():  # a subgraph being edited is written back first
            pass
        if self.path is None:
            return self.save_as()
        try:
            serialize.save(self.editor.graph, self.path)
        except OSError as error:
            self.warn(f"could not save {self.path}: {error.strerror or error}")
            return False
        self.editor.history.mark_clean()
        document.clear_recovery()
        document.add_recent(self.path)
        self.statusBar().showMessage(f"saved {self.path}", 5000)
        self.update_title()
        return True

    def save_as(self) -> bool:
        chosen = self.choose_save_path()
        if not chosen:
            return False
        path = Path(chosen)
        self.path = path if path.suffix else path.with_suffix(".json")
        return self.save()

    def autosave(self) -> None:
        if not self.editor.history.is_clean:
            document.write_recovery(self.editor.document, self.path)

    def offer_recovery(self) -> bool:
        """After a crash: offer the autosaved graph; either way the recovery file is then removed."""
        found = document.read_recovery(self.registry)
        if found is None:
            return False
        graph, path = found
        accepted = self.ask_recover(path)
        document.clear_recovery()
        if accepted:
            self._show(graph, path, note="recovered", clean=False)
        return accepted

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._maybe_save():
            event.ignore()
            return
        self.autosave_timer.stop()
        document.clear_recovery()
        self.editor.scene.detach()
        self.runner.close()
        self.queue.close()
        event.accept()
