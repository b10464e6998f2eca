"""The job store: a queue of graph runs that survives restarts, in one SQLite file.

Tables: `batches` (jobs enqueued together: an editor's Run xN, a sweep), `jobs` (the graph snapshot that runs,
its targets, status, queue position, attempts, lease), `job_events` (each job's events in order, for replay),
`artifacts` (the files a job wrote), and `schema_version` with numbered migrations (a newer file than this
code is refused, not misread).

Statuses: pending -> running -> done | failed | cancelled. A runner takes the next pending job with
`claim(owner)`, which also sets a lease (`lease_seconds`); it renews the lease while it runs (`heartbeat`)
and ends the job with `finish`. If it dies, the lease expires and `recover` puts the job back to pending
(or failed once its attempts are used up), so nothing accepted is lost and nothing runs to completion twice.
Pending jobs run in queue order (`position`), which `move` changes; `cancel` removes a pending job and
flags a running one (`cancel_requested`) for its runner.

WAL mode and `BEGIN IMMEDIATE` claims let several processes share the file. Pure stdlib: never import torch
or Qt here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.jobs.records import Records

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed", "cancelled")
ENDED = ("done", "failed", "cancelled")

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id INTEGER NOT NULL REFERENCES batches(id),
        graph TEXT NOT NULL,
        targets TEXT,
        meta TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'pending',
        position REAL NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        lease_owner TEXT,
        lease_expires REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created REAL NOT NULL,
        started REAL,
        ended REAL
    );
    CREATE INDEX jobs_status_position ON jobs(status, position);
    CREATE INDEX jobs_batch ON jobs(batch_id);
    CREATE TABLE job_events (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        seq INTEGER NOT NULL,
        time REAL NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    CREATE TABLE artifacts (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        idx INTEGER NOT NULL,
        path TEXT NOT NULL,
        node TEXT,
        PRIMARY KEY (job_id, idx)
    );
    """,
}


class StoreProblem(ValueError):
    """The job file cannot be used (newer schema, not a job store); the message names the file."""


@dataclass(frozen=True)
class Job:
    """One queued graph run, as the store has it."""

    id: int
    batch_id: int
    graph: str
    targets: list[str] | None
    meta: dict[str, Any]
    status: str
    position: float
    attempt: int
    max_attempts: int
    lease_owner: str | None
    cancel_requested: bool
    error: str | None
    created: float
    started: float | None
    ended: float | None


class JobStore(Records):
    """Jobs in one SQLite file (see the module docstring). Safe to share between threads and processes."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=30, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise StoreProblem(f"{self.path}: not a job store ({error})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE: no other process writes in between)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise StoreProblem(
                    f"{self.path}: written by a newer Nodeloom (job store v{version}; this one knows v{SCHEMA_VERSION})"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # -- enqueueing -----------------------------------------------------------------------------------
    def add_batch(
        self,
        graphs: list[str],
        targets: list[str] | None = None,
        source: str = "editor",
        metas: list[dict[str, Any]] | None = None,
        max_attempts: int = 3,
    ) -> tuple[int, list[int]]:
        """Enqueue one job per graph JSON (in order, after every pending job); (batch id, job ids)."""
        metas = metas or [{} for _ in graphs]
        now = self.clock()
        with self._write() as db:
            batch = db.execute("INSERT INTO batches (source, created) VALUES (?, ?)", (source, now)).lastrowid
            last = db.execute("SELECT COALESCE(MAX(position), 0) FROM jobs").fetchone()[0]
            ids = []
            for offset, (graph, meta) in enumerate(zip(graphs, metas, strict=True)):
                ids.append(
                    db.execute(
                        "INSERT INTO jobs (batch_id, graph, targets, meta, position, max_attempts, created) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            batch,
                            graph,
                            json.dumps(targets) if targets is not None else None,
                            json.dumps(meta),
                            last + 1 + offset,
                            max_attempts,
                            now,
                        ),
                    ).lastrowid
                )
        return batch, ids

    # -- running --------------------------------------------------------------------------------------
    def claim(self, owner: str, lease_seconds: float = 60.0, job_id: int | None = None) -> Job | None:
        """The first pending job in queue order (or pending job `job_id`, as a dispatcher picks), now running
        under `owner`'s lease (None: nothing pending, or that job is no longer pending)."""
        now = self.clock()
        pick = "AND id = ? " if job_id is not None else ""
        with self._write() as db:
            row = db.execute(
                f"SELECT id FROM jobs WHERE status = 'pending' {pick}ORDER BY position, id LIMIT 1",
                (job_id,) if job_id is not None else (),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires = ?, attempt = attempt + 1, "
                "started = ?, error = NULL WHERE id = ?",
                (owner, now + lease_seconds, now, row[0]),
            )
        return self.get(row[0])

    def heartbeat(self, job_id: int, owner: str, lease_seconds: float = 60.0) -> bool:
        """Renew `owner`'s lease on a running job; False if it is no longer theirs (recovered, cancelled)."""
        with self._write() as db:
            changed = db.execute(
                "UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (self.clock() + lease_seconds, job_id, owner),
            ).rowcount
        return changed == 1

    def finish(self, job_id: int, status: str, error: str | None = None, owner: str | None = None) -> bool:
        """End a running job (done, failed, cancelled); with `owner`, only if it still holds the lease."""
        if status not in ENDED:
            raise ValueError(f"a job ends as one of {', '.join(ENDED)}, not {status!r}")
        query = "UPDATE jobs SET status = ?, error = ?, ended = ?, lease_owner = NULL, lease_expires = NULL "
        query += "WHERE id = ? AND status = 'running'"
        args: list[Any] = [status, error, self.clock(), job_id]
        if owner is not None:
            query += " AND lease_owner = ?"
            args.append(owner)
        with self._write() as db:
            return db.execute(query, args).rowcount == 1

    def recover(self, every_running: bool = False) -> list[int]:
        """Running jobs whose lease expired (their runner died), or every running job (a server that owns
        the store alone, starting): back to pending while attempts remain, else failed. Returns the ids
        put back."""
        expired = "" if every_running else " AND lease_expires < ?"
        with self._write() as db:
            rows = db.execute(
                "SELECT id, attempt, max_attempts, cancel_requested FROM jobs WHERE status = 'running'"
                + expired,
                () if every_running else (self.clock(),),
            ).fetchall()
            return self._requeue(db, rows, "its runner stopped {} times")

    def release(self, job_id: int, owner: str, why: str, used_attempt: bool = True) -> bool:
        """`owner` lost a running job (its worker died): back to pending while attempts remain, else failed
        with `why`. A runner that stops on purpose (`used_attempt=False`) gives the attempt back too. True
        when it went back."""
        with self._write() as db:
            if not used_attempt:
                db.execute(
                    "UPDATE jobs SET attempt = MAX(attempt - 1, 0) WHERE id = ? AND status = 'running' "
                    "AND lease_owner = ?",
                    (job_id, owner),
                )
            rows = db.execute(
                "SELECT id, attempt, max_attempts, cancel_requested FROM jobs WHERE id = ? AND status = 'running' "
                "AND lease_owner = ?",
                (job_id, owner),
            ).fetchall()
            return bool(self._requeue(db, rows, why + " ({} attempts)"))

    def _requeue(self, db: sqlite3.Connection, rows: list[tuple], why: str) -> list[int]:
        back = []
        for job_id, attempt, max_attempts, cancel in rows:
            if cancel:  # its runner is gone and nobody wants it any more: never run it again
                db.execute(
                    "UPDATE jobs SET status = 'cancelled', ended = ?, lease_owner = NULL, lease_expires = NULL "
                    "WHERE id = ?",
                    (self.clock(), job_id),
                )
            elif attempt < max_attempts:
                db.execute(
                    "UPDATE jobs SET status = 'pending', lease_owner = NULL, lease_expires = NULL WHERE id = ?",
                    (job_id,),
                )
                back.append(job_id)
            else:
                db.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, ended = ?, lease_owner = NULL WHERE id = ?",
                    (why.format(attempt), self.clock(), job_id),
                )
        return back

    # -- changing the queue ---------------------------------------------------------------------------
    def cancel(self, job_id: int) -> str | None:
        """Cancel a job: a pending one ends now ("cancelled"), a running one is flagged for its runner
        ("requested"); None for a job that already ended or does not exist."""
        with self._write() as db:
            if db.execute(
                "UPDATE jobs SET status = 'cancelled', ended = ? WHERE id = ? AND status = 'pending'",
                (self.clock(), job_id),
            ).rowcount:
                return "cancelled"
            if db.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,)
            ).rowcount:
                return "requested"
        return None

    def move(self, job_id: int, index: int) -> bool:
        """Put a pending job at `index` among the pending jobs (0 = next to run)."""
        with self._write() as db:
            pending = [
                r[0] for r in db.execute("SELECT id FROM jobs WHERE status = 'pending' ORDER BY position, id")
            ]
            if job_id not in pending:
                return False
            pending.remove(job_id)
            pending.insert(max(0, min(index, len(pending))), job_id)
            base = db.execute(
                "SELECT COALESCE(MIN(position), 0) FROM jobs WHERE status = 'pending'"
            ).fetchone()[0]
            for offset, other in enumerate(pending):
                db.execute("UPDATE jobs SET position = ? WHERE id = ?", (base + offset, other))
        return True

    def clear(self, statuses: tuple[str, ...] = ENDED) -> int:
        """Delete the jobs in `statuses` (by default every ended one) with their events and artifacts
        (the files stay on disk); returns how many."""
        if any(s not in ENDED for s in statuses):
            raise ValueError("only ended jobs can be cleared; cancel pending or running ones first")
        marks = ",".join("?" * len(statuses))
        with self._write() as db:
            ids = [r[0] for r in db.execute(f"SELECT id FROM jobs WHERE status IN ({marks})", statuses)]
            for table in ("job_events", "artifacts"):
                db.executemany(f"DELETE FROM {table} WHERE job_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
        return len(ids)

    # -- reading --------------------------------------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(
        self, statuses: tuple[str, ...] = STATUSES, batch_id: int | None = None, limit: int = 1000
    ) -> list[Job]:
        """Jobs in `statuses`: pending and running in queue order, then ended ones newest first."""
        marks = ",".join("?" * len(statuses))
        query = f"SELECT {_COLUMNS} FROM jobs WHERE status IN ({marks})"
        args: list[Any] = list(statuses)
        if batch_id is not None:
            query += " AND batch_id = ?"
            args.append(batch_id)
        query += " ORDER BY status IN ('done', 'failed', 'cancelled'), "
        query += "CASE WHEN status IN ('done', 'failed', 'cancelled') THEN -id ELSE position END, id LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [_job(row) for row in rows]


_COLUMNS = (
    "id, batch_id, graph, targets, meta, status, position, attempt, max_attempts, lease_owner, "
    "cancel_requested, error, created, started, ended"
)


def _job(row: tuple) -> Job:
    (job_id, batch, graph, targets, meta, status, position, attempt, max_attempts, owner, cancel, error,
     created, started, ended) = row  # fmt: skip
    return Job(
        job_id,
        batch,
        graph,
        json.loads(targets) if targets is not None else None,
        json.loads(meta),
        status,
        position,
        attempt,
        max_attempts,
        owner,
        bool(cancel),
        error,
        created,
        started,
        ended,
    )
