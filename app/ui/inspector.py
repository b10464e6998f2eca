"""Inspector: the side panel for the selected node, generated from its spec.

Bounded numbers get a slider and a spin box, choices a combo, multi-line text a text box, file and
model params a picker (models listed from the model roots), seeds a number field; descriptions are
tooltips. Every edit is a SetParam command; one slider drag, or one typing burst in a field, shares a
gesture token and so is one undo step. Linkable params can be turned into input sockets and back.
Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import Shiboken

from app.files import FileResolver
from app.graph import types as T
from app.graph.commands import ConvertParam, SetMode, SetParam, SetTitle
from app.graph.layout_commands import SetLayout
from app.graph.spec import ParamSpec
from app.jobs import seeds
from app.ui.editor import Editor
from app.ui.fields import FocusOut, Gesture, number_field
from app.ui.items import FrameItem

NODE_COLOURS: dict[str, str | None] = {
    "default": None,
    "red": "#4a2a2a",
    "green": "#2a4030",
    "blue": "#2a3650",
    "purple": "#3e2f52",
    "brown": "#46382a",
}
FRAME_COLOURS: dict[str, str] = {
    "indigo": "#5c6bc0",
    "green": "#2e7d32",
    "red": "#c62828",
    "amber": "#ff8f00",
    "teal": "#00897b",
    "grey": "#757575",
}


def _palette_combo(palette: dict[str, str | None], current: str | None) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(palette))
    names = [name for name, value in palette.items() if value == current]
    combo.setCurrentText(names[0] if names else next(iter(palette)))
    return combo


class Inspector(QScrollArea):
    def __init__(self, editor: Editor) -> None:
        super().__init__()
        self.editor = editor
        self.setWidgetResizable(True)
        self.node_id: str | None = None
        self.frame_id: str | None = None
        self.widgets: dict[str, QWidget] = {}
        self.resolver = FileResolver()
        self._pushing = False
        self._rebuild_pending = False
        self._unsubscribe = lambda: None
        editor.scene.selectionChanged.connect(self._selection_changed)
        editor.graph_replaced.connect(self._watch)
        self._watch()

    def _watch(self) -> None:
        self._unsubscribe()
        self._unsubscribe = self.editor.graph.subscribe(self._on_event)
        self.show_node(None)

    def _selection_changed(self) -> None:
        if not Shiboken.isValid(self.editor.scene) or not Shiboken.isValid(self):
            return  # the scene is being destroyed with the window
        nodes = self.editor.selected_nodes()
        frames = self.editor.selected(FrameItem)
        if not nodes and len(frames) == 1:
            self.show_frame(frames[0].frame_id)
        else:
            self.show_node(nodes[0] if len(nodes) == 1 else None)

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        """Rebuild (deferred, once per burst) when the shown node changes by anything but its own fields."""
        if self.frame_id is not None:
            relevant = kind == "layout_changed" and data["key"] == "frames"
            if relevant and not self._rebuild_pending:
                self._rebuild_pending = True
                QTimer.singleShot(0, self._rebuild)
            return
        if self.node_id is None:
            return
        if kind in ("param_changed", "node_changed", "node_removed"):
            relevant = data["node"].id == self.node_id and not (self._pushing and kind != "node_removed")
            if kind == "param_changed" and data["node"].id == self.node_id:
                spec = self.editor.registry.get(data["node"].type)
                relevant = relevant or (spec is not None and data["name"] in spec.controlling)
        elif kind in ("edge_added", "edge_removed"):
            relevant = data["edge"].dst == self.node_id
        else:
            relevant = kind == "layout_changed" and data["key"] == "sockets"
        if relevant and not self._rebuild_pending:
            self._rebuild_pending = True
            QTimer.singleShot(0, self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_pending = False
        if not Shiboken.isValid(self):
            return
        if self.frame_id is not None:
            self.show_frame(self.frame_id)
        else:
            self.show_node(self.node_id)

    def show_frame(self, frame_id: str) -> None:
        """Title and colour of a frame."""
        frames = self.editor.graph.layout.get("frames", {})
        if frame_id not in frames:
            self.show_node(None)
            return
        self.node_id, self.frame_id, self.widgets = None, frame_id, {}
        frame = frames[frame_id]
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(QLabel(f"<b>Frame</b>  <small>{frame_id}</small>"))
        form = QFormLayout()
        layout.addLayout(form)

        def change(label: str, key: str, value: Any) -> None:
            current = self.editor.graph.layout["frames"][frame_id]
            if current.get(key) != value:
                self._push(SetLayout(label, "frames", frame_id, {**current, key: value}))

        title = QLineEdit(frame.get("title", ""))
        title.editingFinished.connect(lambda: change("Rename frame", "title", title.text()))
        form.addRow("Title", title)
        colour = _palette_combo(FRAME_COLOURS, frame.get("colour"))
        colour.currentTextChanged.connect(lambda name: change("Frame colour", "colour", FRAME_COLOURS[name]))
        form.addRow("Colour", colour)
        self.widgets.update({"@frame_title": title, "@frame_colour": colour})
        layout.addStretch()
        self.setWidget(page)

    def _push(self, command) -> None:
        self._pushing = True
        try:
            self.editor.push(command)
        finally:
            self._pushing = False

    # -- building the form ------------------------------------------------------------------------
    def show_node(self, node_id: str | None) -> None:
        self.node_id, self.frame_id, self.widgets = node_id, None, {}
        page = QWidget()
        layout = QVBoxLayout(page)
        if node_id is None or node_id not in self.editor.graph.nodes:
            self.node_id = None
            hint = QLabel("Select one node to edit its values.")
            hint.setWordWrap(True)
            layout.addWidget(hint)
            layout.addStretch()
            self.setWidget(page)
            return
        node = self.editor.graph.nodes[node_id]
        spec = self.editor.registry.get(node.type)
        heading = QLabel(f"<b>{spec.title if spec else node.type}</b>  <small>{node_id}</small>")
        heading.setToolTip(spec.description if spec else f"unknown node type {node.type}")
        layout.addWidget(heading)
        form = QFormLayout()
        layout.addLayout(form)
        title = QLineEdit(node.title)
        title.setPlaceholderText(spec.title if spec else node.type)
        title.editingFinished.connect(lambda: self._push(SetTitle(node_id, title.text())))
        form.addRow("Title", title)
        self.widgets["@title"] = title
        mode = QComboBox()
        mode.addItems(["normal", "bypass", "mute"])
        mode.setCurrentText(node.mode)
        mode.currentTextChanged.connect(lambda text: self._push(SetMode([node_id], text)))
        form.addRow("Mode", mode)
        colour = _palette_combo(NODE_COLOURS, self.editor.graph.layout.get("colours", {}).get(node_id))
        colour.currentTextChanged.connect(
            lambda name: self._push(SetLayout("Colour", "colours", node_id, NODE_COLOURS[name]))
        )
        form.addRow("Colour", colour)
        self.widgets["@colour"] = colour
        incoming = self.editor.graph.incoming(node_id)
        sockets = self.editor.graph.layout.get("sockets", {}).get(node_id, [])
        applying = {p.name for p in spec.shown_params(node.params)} if spec else set()
        for param in spec.params if spec else ():
            value = node.params.get(param.name, param.default)
            edge = incoming.get(param.name)
            if param.name not in applying and edge is None and param.name not in sockets:
                continue  # not used with the node's current settings (PAG's layers when the method is cfg)
            if edge is not None:
                field: QWidget = QLabel(f"linked from {edge.src}.{edge.src_port}")
            else:
                field = self._field(node_id, param, value)
            field.setToolTip(param.description)
            if param.linkable:
                field = self._with_convert(node_id, param, field, param.name in sockets or edge is not None)
            label = QLabel(param.name)
            label.setToolTip(param.description)
            form.addRow(label, field)
        layout.addStretch()
        self.setWidget(page)

    def _with_convert(self, node_id: str, param: ParamSpec, field: QWidget, is_socket: bool) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(field, 1)
        button = QToolButton()
        button.setText("⇠" if not is_socket else "✕")
        button.setToolTip("Show as an input socket" if not is_socket else "Back to a value (unlinks it)")
        button.clicked.connect(lambda: self._push(ConvertParam(node_id, param.name, not is_socket)))
        row.addWidget(button)
        self.widgets[f"@convert:{param.name}"] = button
        return box

    def _field(self, node_id: str, param: ParamSpec, value: Any) -> QWidget:
        name = param.name
        set_value = lambda v, token=None: self._push(SetParam(node_id, name, v, gesture=token))  # noqa: E731
        if param.type == T.BOOL:
            box = QCheckBox()
            box.setChecked(bool(value))
            box.toggled.connect(lambda checked: set_value(checked))
            self.widgets[name] = box
            return box
        if param.choices:
            combo = QComboBox()
            combo.addItems(list(param.choices))
            combo.setCurrentText(str(value))
            combo.currentTextChanged.connect(lambda text: set_value(text))
            self.widgets[name] = combo
            return combo
        if param.type in (T.INT, T.FLOAT):
            return number_field(param, value, set_value, self.widgets)
        if param.path is not None:
            return self._path(param, value, set_value)
        gesture = Gesture()
        if param.multiline or param.type != T.STRING:
            text = QPlainTextEdit(str(value)) if param.multiline else QLineEdit(str(value))
            if param.multiline:
                text.setMaximumHeight(90)
                text.textChanged.connect(lambda: set_value(text.toPlainText(), gesture.token))
                text.installEventFilter(FocusOut(text, gesture.end))
            else:
                text.textEdited.connect(lambda t: self._typed(param, t, set_value, gesture))
                text.editingFinished.connect(gesture.end)
                text.editingFinished.connect(lambda: self._restore(node_id, param, text))
            self.widgets[name] = text
            if param.type == T.SEED:
                box = QWidget()
                row = QHBoxLayout(box)
                row.setContentsMargins(0, 0, 0, 0)
                row.addWidget(text, 2)
                row.addWidget(self._seed_control(node_id, name), 1)
                return box
            return text
        line = QLineEdit(str(value))
        line.textEdited.connect(lambda t: set_value(t, gesture.token))
        line.editingFinished.connect(gesture.end)
        self.widgets[name] = line
        return line

    def _seed_control(self, node_id: str, name: str) -> QComboBox:
        """ComfyUI's "control after generate" for a seed: what each queued run leaves in the field."""
        combo = QComboBox()
        combo.addItems(list(seeds.CONTROLS))
        combo.setCurrentText(seeds.control(self.editor.graph, node_id, name))
        combo.setToolTip("After each queued run: keep the seed, step it by one, or draw a new one")
        key = f"{node_id}.{name}"

        def chosen(mode: str) -> None:
            value = None if mode == "fixed" else mode
            self._push(SetLayout("Seed control", seeds.LAYOUT_KEY, key, value))

        combo.currentTextChanged.connect(chosen)
        self.widgets[f"{name}@control"] = combo
        return combo

    def _typed(self, param: ParamSpec, text: str, set_value, gesture: Gesture) -> None:
        """A typed value: taken when it parses; otherwise the field turns red with the reason and, when
        editing ends, shows the value the param still has (invalid text is never silently dropped)."""
        field = self.widgets.get(param.name)
        try:
            value = param.parse(text)
            problem = param.check(value)
        except ValueError as error:
            value, problem = None, str(error)
        if problem:
            if field is not None:
                field.setStyleSheet("border: 1px solid #e53935;")
                field.setToolTip(f"not taken: {problem}")
            self.editor.message.emit(f"{param.name}: {problem}")
            return
        if field is not None:
            field.setStyleSheet("")
            field.setToolTip("")
        set_value(value, gesture.token)

    def _restore(self, node_id: str, param: ParamSpec, field: QLineEdit) -> None:
        """After an edit that was not taken, show the value the param has."""
        node = self.editor.graph.nodes.get(node_id)
        if node is not None and field.styleSheet():
            field.setText(str(node.params.get(param.name, param.default)))
            field.setStyleSheet("")

    def _path(self, param: ParamSpec, value: Any, set_value) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        browse = QToolButton()
        browse.setText("…")
        if param.path.startswith("model:"):
            combo = QComboBox()
            combo.setEditable(True)
            combo.addItems(self.resolver.list_models(param.path.split(":", 1)[1]))
            combo.setCurrentText(str(value))
            typing = Gesture()
            combo.currentTextChanged.connect(lambda text: set_value(text, typing.token))
            combo.activated.connect(lambda _: typing.end())
            self.widgets[param.name] = combo
            row.addWidget(combo, 1)
            setter = combo.setCurrentText
        else:
            line = QLineEdit(str(value))
            gesture = Gesture()
            line.textEdited.connect(lambda t: set_value(t, gesture.token))
            line.editingFinished.connect(gesture.end)
            self.widgets[param.name] = line
            row.addWidget(line, 1)
            setter = lambda text: (line.setText(text), set_value(text))  # noqa: E731

        def pick() -> None:
            path, _ = QFileDialog.getOpenFileName(self, f"Choose {param.name}")
            if path:
                setter(path)

        browse.clicked.connect(pick)
        row.addWidget(browse)
        return box
