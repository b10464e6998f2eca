"""Node search: fuzzy ranking over title, category, type id and description, with type filters.

`rank(specs, "vae dec in:LATENT out:IMAGE")` keeps nodes that take a LATENT and give an IMAGE and
orders them by how well the words match. `SearchPopup` is the canvas overlay (Tab, double-click,
or a link dropped on empty canvas) that adds the chosen node where it was opened.
Imports Qt only in the popup; never torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtWidgets import QFrame, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from app.graph import types as T
from app.graph.spec import NodeSpec


def _takes(spec: NodeSpec, kind: str) -> bool:
    slots = [p.type for p in spec.inputs] + [p.type for p in spec.params if p.linkable]
    return any(T.compatible(kind, slot) for slot in slots)


def _gives(spec: NodeSpec, kind: str) -> bool:
    return any(T.compatible(port.type, kind) for port in spec.outputs)


def _fuzzy(word: str, text: str) -> float:
    """Score of `word` in `text`: substring beats word start beats scattered letters; 0 = no match."""
    text = text.lower()
    at = text.find(word)
    if at >= 0:
        starts_word = at == 0 or not text[at - 1].isalnum()
        return 100.0 - min(at, 40) + (30.0 if starts_word else 0.0)
    position, gaps = 0, 0
    for char in word:
        found = text.find(char, position)
        if found < 0:
            return 0.0
        gaps += found - position
        position = found + 1
    return max(1.0, 40.0 - gaps)


def rank(specs: Iterable[NodeSpec], query: str) -> list[NodeSpec]:
    """Specs matching `query` (words plus `in:TYPE` / `out:TYPE` filters), best first."""
    words, takes, gives = [], [], []
    for token in query.lower().split():
        if token.startswith(("in:", "input:")):
            takes.append(token.split(":", 1)[1].upper())
        elif token.startswith(("out:", "output:")):
            gives.append(token.split(":", 1)[1].upper())
        else:
            words.append(token)
    scored: list[tuple[float, NodeSpec]] = []
    for spec in specs:
        if not all(_takes(spec, kind) for kind in takes if kind) or not all(
            _gives(spec, kind) for kind in gives if kind
        ):
            continue
        total = 0.0
        for word in words:
            best = max(
                _fuzzy(word, spec.title) * 3,
                _fuzzy(word, spec.category) * 1.5,
                _fuzzy(word, spec.type) * 1.5,
                _fuzzy(word, spec.description) * 0.5,
            )
            if best <= 0:
                break
            total += best
        else:
            scored.append((total, spec))
    scored.sort(key=lambda item: (-item[0], item[1].category, item[1].title))
    return [spec for _, spec in scored]


class SearchPopup(QFrame):
    """A search box with a result list, shown over the canvas; `chosen` carries a node type id."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget, specs: Callable[[], list[NodeSpec]]) -> None:
        super().__init__(parent)
        self.specs = specs
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("nodeSearch")
        self.setStyleSheet(
            "#nodeSearch { background: #2b2d31; border: 1px solid #555; border-radius: 6px; }"
            "QLineEdit { background: #1e1f22; color: #eee; border: none; padding: 4px; }"
            "QListWidget { background: #2b2d31; color: #ddd; border: none; }"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText("Search nodes   (in:LATENT out:IMAGE)")
        self.list = QListWidget(self)
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        self.resize(320, 300)
        self.prefix = ""
        self.edit.textChanged.connect(self._refresh)
        self.edit.installEventFilter(self)
        self.list.itemActivated.connect(self._pick)
        self.list.itemClicked.connect(self._pick)
        self.hide()

    def open_at(self, pos: QPoint, prefix: str = "") -> None:
        """Show at `pos` (parent coordinates), filtered by `prefix` (e.g. "in:LATENT")."""
        self.prefix = prefix
        parent = self.parentWidget().rect()
        x = max(0, min(pos.x(), parent.width() - self.width()))
        y = max(0, min(pos.y(), parent.height() - self.height()))
        self.move(x, y)
        self.edit.blockSignals(True)
        self.edit.setText(prefix + (" " if prefix else ""))
        self.edit.blockSignals(False)
        self._refresh()
        self.show()
        self.raise_()
        self.edit.setFocus()

    def _refresh(self) -> None:
        self.list.clear()
        for spec in rank(self.specs(), self.edit.text()):
            item = QListWidgetItem(f"{spec.title}    ·  {spec.category}")
            item.setData(Qt.ItemDataRole.UserRole, spec.type)
            item.setToolTip(spec.description)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def _pick(self, item: QListWidgetItem | None = None) -> None:
        item = item or self.list.currentItem()
        if item is None:
            return
        self.hide()
        self.chosen.emit(item.data(Qt.ItemDataRole.UserRole))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.edit and event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._pick()
                return True
            if key == Qt.Key.Key_Escape:
                self.hide()
                self.parentWidget().setFocus()
                return True
            if key in (Qt.Key.Key_Down, Qt.Key.Key_Up):
                step = 1 if key == Qt.Key.Key_Down else -1
                row = max(0, min(self.list.count() - 1, self.list.currentRow() + step))
                self.list.setCurrentRow(row)
                return True
        return super().eventFilter(watched, event)
