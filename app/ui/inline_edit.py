"""Editing a value on the canvas: double-click a param row of a node and an editor opens over it.

Choices get a combo (a pick commits), true/false flips at once, multi-line text (prompts) a text box under the
row (Ctrl+Enter or clicking away commits), everything else a line field (Enter or clicking away commits; the
value is parsed and checked like the inspector's, a refusal names the param). Esc closes without a change.
Each commit is one SetParam command: one undo step. Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtWidgets import QComboBox, QGraphicsProxyWidget, QLineEdit, QPlainTextEdit, QWidget

from app.graph import types as T
from app.graph.commands import SetParam
from app.ui.geometry import ROW_H

TEXT_BOX = (280.0, 96.0)  # a prompt's box: width, height in scene units


class InlineEditor(QObject):
    """At most one open editor on the scene; `open(item, param)` replaces the previous one."""

    def __init__(self, editor: Any) -> None:
        super().__init__()
        self.editor = editor
        self.proxy: QGraphicsProxyWidget | None = None
        self.widget: QWidget | None = None
        self._target: tuple[str, Any] | None = None

    def row_at(self, item: Any, scene_pos: QPointF) -> str | None:
        """The param whose row is under `scene_pos` on `item`, if it can be edited there (not linked)."""
        local = item.mapFromScene(scene_pos)
        for row in item.geometry.rows:
            if row.param and row.y <= local.y() < row.y + ROW_H:
                linked = self.editor.graph.incoming(item.node_id)
                return None if row.param in linked else row.param
        return None

    def open(self, item: Any, name: str) -> QWidget | None:
        self.close()
        node = self.editor.graph.nodes[item.node_id]
        spec = self.editor.registry.get(node.type)
        param = spec.param(name) if spec else None
        if param is None:
            return None
        value = node.params.get(name, param.default)
        if param.type == T.BOOL:
            self._commit(item.node_id, param, not value)
            return None
        row = next(r for r in item.geometry.rows if r.param == name)
        self._target = (item.node_id, param)
        if param.choices:
            widget: QWidget = QComboBox()
            widget.addItems(list(param.choices))
            widget.setCurrentText(str(value))
            widget.activated.connect(lambda _=0: self._commit_text(widget.currentText()))
            size = (item.geometry.width / 2, ROW_H + 4)
        elif param.multiline:
            widget = QPlainTextEdit(str(value))
            size = TEXT_BOX
        else:
            widget = QLineEdit(str(value))
            widget.returnPressed.connect(lambda: self._commit_text(widget.text()))
            widget.selectAll()
            size = (item.geometry.width / 2, ROW_H + 4)
        widget.setToolTip(param.description)
        widget.installEventFilter(self)
        self.widget = widget
        self.proxy = item.scene().addWidget(widget)
        self.proxy.setZValue(1000)
        left = item.geometry.width - size[0] if not param.multiline else 0.0
        top = row.y - 2 if not param.multiline else row.y + ROW_H
        self.proxy.setPos(item.mapToScene(QPointF(left, top)))
        self.proxy.resize(*size)
        widget.setFocus()
        return widget

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is not self.widget:
            return False
        if event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if key == Qt.Key.Key_Escape:
                self.close()
                return True
            if isinstance(watched, QPlainTextEdit) and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
                    self._commit_text(watched.toPlainText())
                    return True
        if event.type() == QEvent.Type.FocusOut and self._target is not None:
            text = watched.toPlainText() if isinstance(watched, QPlainTextEdit) else None
            if isinstance(watched, QLineEdit):
                text = watched.text()
            if text is not None:
                self._commit_text(text)
            else:
                self.close()
        return False

    def _commit_text(self, text: str) -> None:
        if self._target is None:
            return
        node_id, param = self._target
        if param.type == T.STRING or param.choices:
            value: Any = text
        else:
            try:
                value = param.parse(text)
            except ValueError as error:
                self.editor.refuse(f"{node_id}.{param.name}: {error}")
                self.close()
                return
        self._commit(node_id, param, value)

    def _commit(self, node_id: str, param: Any, value: Any) -> None:
        self.close()
        problem = param.check(value)
        if problem:
            self.editor.refuse(f"{node_id}.{param.name}: {problem}")
            return
        if self.editor.graph.nodes[node_id].params.get(param.name, param.default) != value:
            self.editor.push(SetParam(node_id, param.name, value))

    def close(self) -> None:
        self._target = None
        proxy, self.proxy, self.widget = self.proxy, None, None
        if proxy is not None and proxy.scene() is not None:
            proxy.widget().removeEventFilter(self)
            proxy.scene().removeItem(proxy)
            proxy.deleteLater()
