"""The editor's Run queue: Run (and Run xN) enqueue a snapshot of the graph as a job in the job store
(app/jobs, a SQLite file in the user's cache folder, so the queue and its history survive a restart); the
queue hands the jobs to the Runner one at a time, in queue order, and records how each ended and the files
it wrote.

Seeds with a "control after generate" mode (app/jobs/seeds) change after each snapshot is taken, as an
undoable edit, so Run three times with `increment` queues seeds 7, 8, 9 and leaves 10 in the field; each
job's `meta.seeds` records the values it ran with. Live runs do not queue: they are the Runner's.
A runner that died (the editor killed) leaves its running job's lease to expire; the next editor puts it
back in the queue (`JobStore.recover`). Imports Qt; never torch.
"""

from __future__ import annotations

import os
import random
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from app.fsutil import user_cache_dir
from app.graph import serialize
from app.graph.commands import SetParam
from app.jobs import Job, JobStore, seeds

LEASE_SECONDS = 60.0
HEARTBEAT_MS = 15_000
STATUS = {"ok": "done", "cancelled": "cancelled"}  # a run's status -> the job's end (else failed)


class QueueRunner(Protocol):
    """What the queue needs of the Runner."""

    running: bool
    pending: list
    saved: dict[str, list[str]]
    finished: Any  # Signal(dict): a run ended
    message: Any  # Signal(str): a status line

    def submit_snapshot(self, graph_json: str, targets: list[str] | None) -> int: ...

    def cancel(self) -> None: ...


class RunQueue(QObject):
    """Jobs queued from one editor (see the module docstring); `changed` fires when the queue did."""

    changed = Signal()

    def __init__(self, editor: Any, runner: QueueRunner, store: JobStore | None = None) -> None:
        super().__init__()
        self.editor, self.runner = editor, runner
        self.store = store or JobStore(user_cache_dir() / "jobs.sqlite")
        self.owner = f"editor-{os.getpid()}-{id(self):x}"
        self.current: Job | None = None
        self._run_id: int | None = None
        self.rng = random.Random()
        self.store.recover()
        runner.finished.connect(self._finished)
        self._beat = QTimer(self)
        self._beat.setInterval(HEARTBEAT_MS)
        self._beat.timeout.connect(self._heartbeat)

    def enqueue(self, count: int = 1, targets: list[str] | None = None) -> list[int]:
        """Queue `count` runs of the graph as it is now (seeds advancing between them); their job ids."""
        if getattr(self.editor, "inside", ""):
            self.runner.message.emit("leave the subgraph (Ctrl+Shift+E) to run the graph")
            return []
        graph, registry = self.editor.graph, self.editor.registry
        snapshots, metas = [], []
        for _ in range(max(1, count)):
            snapshots.append(serialize.dumps(graph))
            metas.append(
                {
                    "seeds": {
                        f"{n}.{p}": graph.nodes[n].params.get(p)
                        for n, p in seeds.seed_params(graph, registry)
                    },
                    "title": graph.meta.get("name", "") if isinstance(graph.meta, dict) else "",
                }
            )
            for (node, param), value in seeds.advanced(graph, registry, self.rng).items():
                self.editor.push(SetParam(node, param, value, gesture=("seed_control", node, param)))
        _, ids = self.store.add_batch(snapshots, targets=targets, metas=metas)
        self.changed.emit()
        self.pump()
        return ids

    def pump(self) -> None:
        """Start the next queued job when the Runner is free."""
        if self.current is not None or self.runner.running or self.runner.pending:
            return
        job = self.store.claim(self.owner, LEASE_SECONDS)
        if job is None:
            return
        self.current = job
        try:
            self._run_id = self.runner.submit_snapshot(job.graph, job.targets)
        except ValueError as error:  # a snapshot that no longer loads (a node type gone): that job fails
            self.store.finish(job.id, "failed", str(error), owner=self.owner)
            self.current = None
            self.changed.emit()
            self.pump()
            return
        self._beat.start()
        self.changed.emit()

    def cancel(self, job_id: int) -> None:
        """Cancel a queued job; the running one stops at its next step (the Runner's Cancel)."""
        if self.current is not None and job_id == self.current.id:
            self.runner.cancel()
        else:
            self.store.cancel(job_id)
        self.changed.emit()

    def move(self, job_id: int, index: int) -> None:
        if self.store.move(job_id, index):
            self.changed.emit()

    def clear(self) -> None:
        """Forget ended jobs (their files stay) and cancel the pending ones."""
        for job in self.store.jobs(("pending",)):
            self.store.cancel(job.id)
        self.store.clear()
        self.changed.emit()

    def _finished(self, event: dict[str, Any]) -> None:
        job = self.current
        if job is None or event.get("run") not in (None, self._run_id):
            self.pump()  # a Live run ended: queued work may go now
            return
        self.current, self._run_id = None, None
        self._beat.stop()
        status = STATUS.get(event.get("status", ""), "failed")
        errors = event.get("errors") or {}
        problems = event.get("problems") or []
        error = "; ".join(str(v) for v in errors.values()) or "; ".join(
            p.get("message", str(p)) for p in problems
        )
        for node, paths in self.runner.saved.items():
            for path in paths:
                self.store.add_artifact(job.id, path, node)
        self.store.finish(job.id, status, error or None, owner=self.owner)
        self.changed.emit()
        self.pump()

    def _heartbeat(self) -> None:
        if self.current is not None:
            self.store.heartbeat(self.current.id, self.owner, LEASE_SECONDS)

    def close(self) -> None:
        self._beat.stop()
        self.store.close()
