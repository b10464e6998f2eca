"""The Preview dock: the selected node's picture at full resolution, and the running sampler's step
previews (latent -> RGB approximation, at most ~4 per second, throttled by the worker) with "step n/N".

While a run streams previews the dock follows them; when the selection changes it shows the selected
node's picture (always the one of its current settings, see app/ui/pictures.py). A batch shows one picture
at a time with arrows; the picture's context menu copies or saves it. Imports Qt (and numpy through
app.ui.run_state); never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import Shiboken

from app.ui.run_state import to_qimage


class DockEditor(Protocol):
    """What the Preview dock reads of the editor: the selection, and the scene to follow it."""

    scene: Any  # GraphScene: selectionChanged

    def selected_nodes(self) -> list[str]: ...


class DockRunner(Protocol):
    """What the Preview dock reads of the runner: its pictures and the node running now."""

    picture: Any  # a Qt signal (node, picture, caption)
    pictures: dict[str, Any]
    running: str | None


class PreviewDock(QWidget):
    """Caption on top, the picture below, scaled to fit the dock (the pixmap itself is full size); a batch
    is shown one picture at a time with arrows ("image 2/4"). Right-click: Copy image, Save as, and for a
    picture that is a file, Open and Show in folder."""

    def __init__(self, editor: DockEditor, runner: DockRunner) -> None:
        super().__init__()
        self.editor, self.runner = editor, runner
        self.node_id: str | None = None
        self.image: QImage | None = None
        self.path: str | None = None  # the file the picture is, when it is one (History, Save Image)
        self.frames: list[Any] = []  # a batch's pictures
        self.index = 0
        self.tools: Any = None  # app.ui.edit_tools.EditTools: Paint mask, Compare with input
        self._text = ""
        self.caption = QLabel("Nothing to show yet: run the graph (Ctrl+Enter)")
        self.caption.setWordWrap(True)
        self.view = QLabel()
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(64, 64)
        self.view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(
            lambda pos: self.menu().popup(self.view.mapToGlobal(pos))
        )
        self.back, self.forward = QToolButton(), QToolButton()
        self.back.setArrowType(Qt.ArrowType.LeftArrow)
        self.forward.setArrowType(Qt.ArrowType.RightArrow)
        self.back.clicked.connect(lambda: self.step(-1))
        self.forward.clicked.connect(lambda: self.step(1))
        top = QHBoxLayout()
        top.addWidget(self.back)
        top.addWidget(self.caption, 1)
        top.addWidget(self.forward)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self._arrows()
        runner.picture.connect(self._picture)
        editor.scene.selectionChanged.connect(self._selection_changed)

    def show_picture(self, node_id: str, picture: Any, caption: str, path: str | None = None) -> None:
        """Show `picture` (numpy, QImage, or a list: a batch) with `caption`; `path` when it is a file."""
        self.node_id, self.path, self._text = node_id, path, caption
        self.frames = list(picture) if isinstance(picture, list) else []
        self.index = 0
        first = self.frames[0] if self.frames else picture
        self.image = first if isinstance(first, QImage) else to_qimage(first)
        self._caption()
        self._arrows()
        self._fit()

    def step(self, by: int) -> None:
        """Show the next (1) or previous (-1) picture of a batch."""
        if not self.frames:
            return
        self.index = (self.index + by) % len(self.frames)
        self.image = to_qimage(self.frames[self.index])
        self._caption()
        self._fit()

    def _caption(self) -> None:
        prefix = f"image {self.index + 1}/{len(self.frames)} — " if self.frames else ""
        self.caption.setText(prefix + self._text)

    def _arrows(self) -> None:
        for button in (self.back, self.forward):
            button.setVisible(len(self.frames) > 1)

    def menu(self) -> QMenu:
        """Right-click on the picture: Copy image, Save as; Open and Show in folder for a file; the picture
        tools (Paint mask on a Load Image, Compare with input)."""
        menu = QMenu(self)
        shown = self.image is not None
        menu.addAction("Copy image", self.copy).setEnabled(shown)
        menu.addAction("Save as…", self.save_as).setEnabled(shown)
        path = self.path or self._saved_path()
        if path:
            menu.addAction("Open", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(path)))
            folder = str(Path(path).parent)
            menu.addAction("Show in folder", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(folder)))
        if self.tools is not None:
            self.tools.add_actions(menu, self.node_id, self.image)
        return menu

    def copy(self) -> None:
        if self.image is not None:
            QGuiApplication.clipboard().setImage(self.image)

    def save_as(self, target: str | None = None) -> str | None:
        """Write the picture as a PNG (`target`, or where the user chooses); the path written."""
        if self.image is None:
            return None
        if target is None:
            target, _ = QFileDialog.getSaveFileName(self, "Save picture as", "picture.png", "PNG (*.png)")
        if not target:
            return None
        path = Path(target).with_suffix(".png")
        temp = path.parent / f".{path.name}.tmp.png"
        if not self.image.save(str(temp), "PNG"):
            temp.unlink(missing_ok=True)
            return None
        temp.replace(path)  # whole or not at all
        return str(path)

    def _saved_path(self) -> str | None:
        """The file the shown node's last run wrote (Save Image), if any."""
        files = getattr(self.runner, "saved", {}).get(self.node_id or "", [])
        return files[min(self.index, len(files) - 1)] if files else None

    def _picture(self, node_id: str, picture: Any, caption: str) -> None:
        if picture is None:  # the node's settings changed to ones without a picture
            if node_id == self.node_id:
                self.node_id, self.image, self.frames, self.path = None, None, [], None
                self.view.clear()
                self.caption.setText(caption)
                self._arrows()
            return
        selected = self.editor.selected_nodes()
        if not selected or node_id in selected or self.runner.running:
            self.show_picture(node_id, picture, caption)

    def _selection_changed(self) -> None:
        if not Shiboken.isValid(self.editor.scene) or not Shiboken.isValid(self) or self.runner.running:
            return  # the scene is being destroyed with the window, or a run's previews take the dock
        for node_id in self.editor.selected_nodes():
            if node_id in self.runner.pictures:
                self.show_picture(node_id, *self.runner.pictures[node_id])
                return

    def _fit(self) -> None:
        if self.image is None:
            return
        size = self.view.size()
        pixmap = QPixmap.fromImage(self.image)
        if (
            self.image.width() > size.width()
            or self.image.height() > size.height()
            or self.image.width() < 256
        ):
            mode = Qt.TransformationMode.SmoothTransformation
            if self.image.width() < 256:  # tiny pictures: enlarge with visible pixels, not a blur
                mode = Qt.TransformationMode.FastTransformation
            pixmap = pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode)
        self.view.setPixmap(pixmap)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()
