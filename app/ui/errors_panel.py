"""The Errors panel: every validation problem at once, grouped by node, and the runtime errors of the last
runs with the failing node's inputs (shapes, dtypes, model family) and, for out-of-memory, what to try.
Clicking a row selects the node and frames it on the canvas. Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from app.engine.plan import Problem
from app.engine.status import NodeState
from app.graph.model import Graph
from app.registry import Registry

OOM_MARKERS = ("out of memory", "outofmemoryerror", "can't allocate memory", "memoryerror")
OOM_HINTS = (
    "try a smaller width/height or batch (Empty Latent)",
    "turn on tiled decode (VAE Decode 'tiled')",
    "CPU offload: keep one checkpoint loaded (NODELOOM_MAX_MODELS=1) or run on the CPU",
)
NODE_ROLE = Qt.ItemDataRole.UserRole


def is_out_of_memory(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in OOM_MARKERS)


class PanelEditor(Protocol):
    """What the Errors panel reads of the editor, and how it selects and frames a node."""

    graph: Graph
    registry: Registry
    view: Any  # GraphView: frame_selected()

    def select_nodes(self, node_ids: list[str]) -> None: ...


class PanelRunner(Protocol):
    """What the Errors panel reads of the runner after each refresh."""

    states_changed: Any  # a Qt signal
    problems: list[Problem]
    errors: dict[str, dict[str, Any]]
    states: dict[str, NodeState]


class ErrorsPanel(QTreeWidget):
    """Rows: one per node with problems (its title), children: each problem; runtime errors add details."""

    def __init__(self, editor: PanelEditor, runner: PanelRunner) -> None:
        super().__init__()
        self.editor, self.runner = editor, runner
        self.setHeaderHidden(True)
        self.setColumnCount(1)
        self.setWordWrap(True)
        self.itemClicked.connect(self._clicked)
        self.itemActivated.connect(self._clicked)
        runner.states_changed.connect(self.refresh)
        self.refresh()

    def grouped(self) -> dict[str | None, list[tuple[str, list[str]]]]:
        """Node (None: the graph) -> [(message, detail lines)], validation problems first."""
        groups: dict[str | None, list[tuple[str, list[str]]]] = {}
        for problem in self.runner.problems:
            message = f"{problem.where}: {problem.message}" if problem.where else problem.message
            groups.setdefault(problem.node, []).append((message, []))
        for node_id, event in self.runner.errors.items():
            state = self.runner.states.get(node_id)
            if state is None or state.state != "error" or node_id not in self.editor.graph.nodes:
                continue  # fixed since (or the node was removed): the badge no longer says error
            details = [f"input {name}: {text}" for name, text in event.get("inputs", {}).items()]
            if is_out_of_memory(event.get("message", "")):
                details += [f"out of memory — {hint}" for hint in OOM_HINTS]
            groups.setdefault(node_id, []).append((f"run failed: {event.get('message', '')}", details))
        return groups

    def refresh(self) -> None:
        self.clear()
        graph, red = self.editor.graph, QColor("#ef9a9a")
        for node_id, entries in self.grouped().items():
            if node_id is None:
                label = "Graph"
            else:
                node = graph.nodes.get(node_id)
                spec = self.editor.registry.get(node.type) if node else None
                title = (node.title if node else "") or (spec.title if spec else node_id)
                label = f"{title} ({node_id})"
            top = QTreeWidgetItem([f"{label} — {len(entries)} problem{'s' * (len(entries) != 1)}"])
            top.setData(0, NODE_ROLE, node_id)
            top.setForeground(0, red)
            for message, details in entries:
                row = QTreeWidgetItem(top, [message])
                row.setData(0, NODE_ROLE, node_id)
                row.setToolTip(0, message)
                for line in details:
                    QTreeWidgetItem(row, [line]).setData(0, NODE_ROLE, node_id)
                row.setExpanded(True)
            self.addTopLevelItem(top)
            top.setExpanded(True)

    def count(self) -> int:
        """How many problems are listed."""
        return sum(len(entries) for entries in self.grouped().values())

    def _clicked(self, item: QTreeWidgetItem, column: int = 0) -> None:
        node_id = item.data(0, NODE_ROLE)
        if node_id and node_id in self.editor.graph.nodes:
            self.editor.select_nodes([node_id])
            self.editor.view.frame_selected()
