"""The Make Subgraph dialog: the new subgraph's name and which params of its nodes its node exposes (the
seeds are ticked, so control-after-generate keeps working on the group). Imports Qt; never torch."""

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


def ask(
    parent: QWidget,
    graph: Graph,
    registry: Registry,
    nodes: list[str],
    name: str,
    ticked: list[tuple[str, str]],
):
    """(name, [(node, param), ...]) as the user chose them, or None when cancelled."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Make subgraph")
    form = QFormLayout(dialog)
    field = QLineEdit(name, dialog)
    form.addRow("Name", field)
    listing = QListWidget(dialog)
    for node_id in nodes:
        spec = registry.get(graph.nodes[node_id].type)
        for param in spec.params if spec is not None else ():
            item = QListWidgetItem(f"{node_id}.{param.name}", listing)
            item.setData(Qt.ItemDataRole.UserRole, (node_id, param.name))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = (node_id, param.name) in ticked
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
    form.addRow("Params on the node", listing)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    form.addRow(buttons)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    chosen = [
        listing.item(i).data(Qt.ItemDataRole.UserRole)
        for i in range(listing.count())
        if listing.item(i).checkState() == Qt.CheckState.Checked
    ]
    return field.text().strip(), [tuple(pair) for pair in chosen]
