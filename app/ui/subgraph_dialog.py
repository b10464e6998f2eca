"""The Make Subgraph dialog: the new subgraph's name and what its node exposes beside the links that cross
the group's edge: params of its nodes (the seeds are ticked, so control-after-generate keeps working on the
group), unlinked inputs, and outputs nothing outside uses yet. Imports Qt; never torch."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QWidget,
)

from app.graph.model import Graph
from app.registry import Registry

Choice = tuple[str, list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]


def ask(
    parent: QWidget,
    graph: Graph,
    registry: Registry,
    nodes: list[str],
    name: str,
    ticked: list[tuple[str, str]],
) -> Choice | None:
    """(name, params, inputs, outputs) as the user chose them (each a list of (node, name)), or None."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Make subgraph")
    form = QFormLayout(dialog)
    field = QLineEdit(name, dialog)
    form.addRow("Name", field)
    listing = QListWidget(dialog)
    linked_out = {(e.src, e.src_port) for e in graph.edges if e.src in nodes and e.dst not in nodes}

    def offer(kind: str, node_id: str, port: str, label: str, on: bool = False) -> None:
        item = QListWidgetItem(label, listing)
        item.setData(Qt.ItemDataRole.UserRole, (kind, node_id, port))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    for node_id in nodes:
        spec = registry.get(graph.nodes[node_id].type)
        for param in spec.params if spec is not None else ():
            offer("param", node_id, param.name, f"{node_id}.{param.name}", (node_id, param.name) in ticked)
        for port in spec.inputs if spec is not None else ():
            if graph.input_edge(node_id, port.name) is None:
                offer("input", node_id, port.name, f"input {node_id}.{port.name} ({port.type})")
        for port in spec.outputs if spec is not None else ():
            if (node_id, port.name) not in linked_out:
                offer("output", node_id, port.name, f"output {node_id}.{port.name} ({port.type})")
    form.addRow("Also on the node", listing)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    form.addRow(buttons)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    chosen: dict[str, list[tuple[str, str]]] = {"param": [], "input": [], "output": []}
    for i in range(listing.count()):
        if listing.item(i).checkState() == Qt.CheckState.Checked:
            kind, node_id, port = listing.item(i).data(Qt.ItemDataRole.UserRole)
            chosen[kind].append((node_id, port))
    return field.text().strip(), chosen["param"], chosen["input"], chosen["output"]
