"""The Queue and History docks over the editor's RunQueue (app/ui/run_queue.py).

Queue: the jobs in order — running, pending (cancel, move up/down), then the ended ones (done, failed,
cancelled) — each with its seeds and, for failures, the error; "Clear" forgets ended jobs and cancels
pending ones. History: the pictures queued runs saved, newest first, kept across restarts; a click shows one
in the Preview dock, a double-click opens the graph snapshot that made it, and "Compare" puts two selected
pictures side by side. Imports Qt; never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.jobs import Job

ICON = 96
JOB_ROLE = Qt.ItemDataRole.UserRole


def describe(job: Job) -> str:
    """One line for a job: number, status, what made it special (seeds), and an error if it failed."""
    seeds = ", ".join(f"{k.split('.')[0]} {v}" for k, v in (job.meta.get("seeds") or {}).items())
    text = f"#{job.id} {job.status}" + (f" — seed {seeds}" if seeds else "")
    if job.cancel_requested and job.status == "running":
        text += " (cancelling)"
    if job.error:
        text += f": {job.error.splitlines()[0][:120]}"
    return text


class QueuePanel(QWidget):
    def __init__(self, queue: Any) -> None:
        super().__init__()
        self.queue = queue
        self.list = QListWidget()
        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for name, label, slot in (
            ("cancel", "Cancel", self._cancel),
            ("up", "Up", lambda: self._move(-1)),
            ("down", "Down", lambda: self._move(1)),
            ("clear", "Clear", queue.clear),
        ):
            button = QPushButton(label)
            button.clicked.connect(slot)
            buttons.addWidget(button)
            self.buttons[name] = button
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        queue.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_job()
        self.list.clear()
        for job in self.queue.store.jobs(limit=300):
            item = QListWidgetItem(describe(job))
            item.setData(JOB_ROLE, job.id)
            if job.error:
                item.setToolTip(job.error)
            self.list.addItem(item)
            if job.id == selected:
                item.setSelected(True)
                self.list.setCurrentItem(item)

    def selected_job(self) -> int | None:
        items = self.list.selectedItems()
        return items[0].data(JOB_ROLE) if items else None

    def _cancel(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.queue.cancel(job)

    def _move(self, step: int) -> None:
        job = self.selected_job()
        pending = [j.id for j in self.queue.store.jobs(("pending",))]
        if job in pending:
            self.queue.move(job, max(0, pending.index(job) + step))


class HistoryPanel(QWidget):
    def __init__(self, queue: Any, show: Any, open_graph: Any) -> None:
        """`show(path, caption)` shows a picture (the Preview dock); `open_graph(job)` opens a snapshot."""
        super().__init__()
        self.queue, self.show_picture, self.open_graph = queue, show, open_graph
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(ICON, ICON))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemDoubleClicked.connect(self._double_clicked)
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.compare)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.compare_button)
        self._icons: dict[str, QIcon] = {}
        self.dialog: QDialog | None = None
        queue.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for artifact in self.queue.store.artifacts(limit=300):
            path = artifact.path
            if not Path(path).is_file():
                continue
            if path not in self._icons:
                image = QImage(path)
                scaled = image.scaled(ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio)
                self._icons[path] = QIcon(QPixmap.fromImage(scaled))
            item = QListWidgetItem(self._icons[path], f"#{artifact.job_id}")
            item.setData(JOB_ROLE, (artifact.job_id, path))
            item.setToolTip(path)
            self.list.addItem(item)

    def _clicked(self, item: QListWidgetItem) -> None:
        job, path = item.data(JOB_ROLE)
        self.show_picture(path, f"job #{job} — {Path(path).name}")

    def _double_clicked(self, item: QListWidgetItem) -> None:
        job = self.queue.store.get(item.data(JOB_ROLE)[0])
        if job is not None:
            self.open_graph(job)

    def compare(self) -> QDialog | None:
        """Two selected pictures side by side, at the same scale, in a dialog of their own."""
        paths = [item.data(JOB_ROLE)[1] for item in self.list.selectedItems()][:2]
        if len(paths) != 2:
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle("Compare — " + "  |  ".join(Path(p).name for p in paths))
        row = QHBoxLayout(dialog)
        for path in paths:
            column = QVBoxLayout()
            picture = QLabel()
            picture.setPixmap(QPixmap.fromImage(QImage(path)))
            column.addWidget(picture)
            column.addWidget(QLabel(Path(path).name))
            row.addLayout(column)
        dialog.show()
        self.dialog = dialog
        return dialog
