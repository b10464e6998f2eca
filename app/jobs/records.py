"""A job's event log and the files it wrote: the part of the job store (app/jobs/store.py) that records
what runs did. Pure stdlib: never import torch or Qt here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Artifact:
    job_id: int
    index: int
    path: str
    node: str | None


class Records:
    """Mixed into JobStore, which provides the connection, its lock, the clock and `_write`."""

    _db: sqlite3.Connection
    _lock: threading.RLock
    clock: Callable[[], float]
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def add_event(self, job_id: int, event: dict[str, Any]) -> int:
        """Append an event to a job's log; returns its sequence number (1, 2, ...)."""
        with self._write() as db:
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?", (job_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO job_events VALUES (?, ?, ?, ?)", (job_id, seq, self.clock(), json.dumps(event))
            )
        return seq

    def events(self, job_id: int, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """(seq, event) of a job's log after sequence number `after`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, after)
            ).fetchall()
        return [(seq, json.loads(event)) for seq, event in rows]

    def add_artifact(self, job_id: int, path: str, node: str | None = None) -> int:
        with self._write() as db:
            index = db.execute("SELECT COUNT(*) FROM artifacts WHERE job_id = ?", (job_id,)).fetchone()[0]
            db.execute("INSERT INTO artifacts VALUES (?, ?, ?, ?)", (job_id, index, path, node))
        return index

    def artifacts(self, job_id: int | None = None, limit: int = 1000) -> list[Artifact]:
        """A job's files, or (None) the newest files of every job, newest first."""
        with self._lock:
            if job_id is not None:
                rows = self._db.execute(
                    "SELECT job_id, idx, path, node FROM artifacts WHERE job_id = ? ORDER BY idx", (job_id,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT job_id, idx, path, node FROM artifacts ORDER BY job_id DESC, idx LIMIT ?",
                    (limit,),
                ).fetchall()
        return [Artifact(*row) for row in rows]
