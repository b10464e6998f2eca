"""The Preview dock: the selected node's picture at full resolution, and the running sampler's step
previews (latent -> RGB approximation, at most ~4 per second, throttled by the worker) with "step n/N".

While a run streams previews the dock follows them; when the selection changes it shows the selected
node's last picture. Imports Qt (and numpy through app.ui.run_state); never torch.
"""

from __future__ import annotations

from typing import Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget
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
    """Caption on top, the picture below, scaled to fit the dock (the pixmap itself is full size)."""

    def __init__(self, editor: DockEditor, runner: DockRunner) -> None:
        super().__init__()
        self.editor, self.runner = editor, runner
        self.node_id: str | None = None
        self.image: QImage | None = None
        self.caption = QLabel("Nothing to show yet: run the graph (Ctrl+Enter)")
        self.caption.setWordWrap(True)
        self.view = QLabel()
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(64, 64)
        self.view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)
        runner.picture.connect(self._picture)
        editor.scene.selectionChanged.connect(self._selection_changed)

    def show_picture(self, node_id: str, picture: Any, caption: str) -> None:
        self.node_id = node_id
        self.image = picture if isinstance(picture, QImage) else to_qimage(picture)
        self.caption.setText(caption)
        self._fit()

    def _picture(self, node_id: str, picture: Any, caption: str) -> None:
        if picture is None:  # the node's settings changed to ones without a picture
            if node_id == self.node_id:
                self.node_id, self.image = None, None
                self.view.clear()
                self.caption.setText(caption)
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
