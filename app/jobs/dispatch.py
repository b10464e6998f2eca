"""The dispatcher: hands the store's pending jobs to a backend's workers and records what they report.

- **Affinity**: a worker remembers the cache keys of the nodes it ran or found cached; an idle worker
  takes, among the first `lookahead` pending jobs, the one that shares the most keys with it (same
  checkpoint, same prompt encodings, ...) less the keys another worker holds or is making now, ties in
  queue order: a model or a prompt stays with the worker that has it, and two cold workers start on
  different ones. The head of the queue is taken anyway once `lookahead` jobs have passed it, so nothing
  starves.
- **Leases**: a claimed job's lease is renewed while its worker runs it; a worker that dies gives its job
  back (pending again until its attempts are used up); a dispatcher that dies leaves leases that expire,
  and the next one (`recover`) re-queues those jobs: nothing accepted is lost, nothing finishes twice.
- **Cancel**: a pending job ends at once (the store); a running one is asked to stop (cooperative, at the
  next node or step) and its worker is killed `kill_after` seconds later if it has not.
- **Events**: each job's events go to its log in the store (pictures and previews stay in the worker),
  the files it wrote become its artifacts.

Backends (app/jobs/local.py: worker processes; app/jobs/ray_backend.py: Ray actors) implement `Backend`.
Never import torch or Qt here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.engine.events import EventKind, jsonable
from app.jobs.store import Job, JobStore

LOST = "worker_lost"  # a backend's event: the worker died with its job (the job is given back)
QUIET = (EventKind.PREVIEW, EventKind.IMAGE, EventKind.WORKER_READY, EventKind.DEVICE)  # not in job logs


class Backend(Protocol):
    """Runs jobs on named workers, one job per worker at a time."""

    names: list[str]

    def submit(
        self, worker: str, graph: str, targets: list[str] | None, settings: dict[str, Any]
    ) -> None: ...

    def events(self, timeout: float) -> list[tuple[str, dict[str, Any]]]: ...  # (worker, event)

    def cancel(self, worker: str) -> None: ...

    def kill(self, worker: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class Running:
    job: Job
    since: float
    cancel_asked: float | None = None
    beat: float = 0.0


@dataclass
class Stats:
    """What the dispatcher did, for summaries and benches."""

    done: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    ran: int = 0  # nodes run
    cached: int = 0  # nodes found cached
    per_worker: dict[str, int] = field(default_factory=dict)  # jobs run per worker


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        backend: Backend,
        keys: Callable[[Job], set[str]] | None = None,
        settings: dict[str, Any] | None = None,
        lookahead: int = 32,
        lease: float = 30.0,
        kill_after: float = 10.0,
        affinity: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[Job, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store, self.backend = store, backend
        self.keys = keys or (lambda job: set())
        self.settings = settings or {}
        self.lookahead, self.lease, self.kill_after = lookahead, lease, kill_after
        self.affinity, self.clock, self.on_event = affinity, clock, on_event
        self.owner = f"dispatch-{uuid.uuid4().hex[:8]}"
        self.running: dict[str, Running] = {}
        self.warm: dict[str, set[str]] = {name: set() for name in backend.names}
        self.passed: dict[int, int] = {}  # job id -> times a later job was taken before it
        self._keys: dict[int, set[str]] = {}
        self.stats = Stats()
        self._next_worker = 0

    # -- one round ---------------------------------------------------------------------------------
    def step(self, timeout: float = 0.05) -> None:
        """Recover expired leases, give idle workers work, record events, renew leases, pass on cancels."""
        self.store.recover()
        self._assign()
        for worker, event in self.backend.events(timeout):
            self._record(worker, event)
        now = self.clock()
        for worker, run in list(self.running.items()):
            if now - run.beat > self.lease / 3:
                run.beat = now
                if not self.store.heartbeat(run.job.id, self._owner(worker), self.lease):
                    current = self.store.get(run.job.id)
                    if current is not None and current.status == "cancelled":
                        self._cancel(worker, run, now)
            job = self.store.get(run.job.id)
            if job is not None and job.cancel_requested:
                self._cancel(worker, run, now)

    def run(self, job_ids: list[int], progress: Callable[[], None] | None = None) -> None:
        """Step until every job in `job_ids` has ended."""
        while True:
            self.step()
            if progress is not None:
                progress()
            if all(
                (self.store.get(i) or _ENDED_JOB).status in ("done", "failed", "cancelled") for i in job_ids
            ):
                return

    def close(self) -> None:
        for worker in list(self.running):
            self.backend.kill(worker)
            run = self.running.pop(worker)
            self.store.release(run.job.id, self._owner(worker), "the dispatcher stopped", used_attempt=False)
        self.backend.close()

    # -- choosing ----------------------------------------------------------------------------------
    def _owner(self, worker: str) -> str:
        return f"{self.owner}/{worker}"

    def _assign(self) -> None:
        idle = [name for name in self.backend.names if name not in self.running]
        if not idle:
            return
        if not self.affinity:  # round robin: the next idle worker after the last one used
            count = len(self.backend.names)
            order = [self.backend.names[(self._next_worker + i) % count] for i in range(count)]
            idle = [name for name in order if name in idle]
        for worker in idle:
            pending = self.store.jobs(("pending",), limit=self.lookahead)
            if not pending:
                return
            job = self.choose(worker, pending)
            claimed = self.store.claim(self._owner(worker), self.lease, job_id=job.id)
            if claimed is None:
                continue
            for other in pending:
                if other.position < job.position:
                    self.passed[other.id] = self.passed.get(other.id, 0) + 1
            self._start(worker, claimed)

    def choose(self, worker: str, pending: list[Job]) -> Job:
        """The job this worker should take next (see the module docstring)."""
        head = pending[0]
        if not self.affinity or self.passed.get(head.id, 0) >= self.lookahead:
            return head
        warm = self.warm.get(worker, set())
        elsewhere: set[str] = set()  # what other workers hold or are making now, and this one does not
        for other in self.backend.names:
            if other != worker:
                elsewhere |= self.warm.get(other, set())
                if other in self.running:
                    elsewhere |= self._job_keys(self.running[other].job)
        elsewhere -= warm
        best, best_score = head, None
        for job in pending:
            keys = self._job_keys(job)
            score = len(keys & warm) - len(keys & elsewhere)
            if best_score is None or score > best_score:
                best, best_score = job, score
        return best

    def _job_keys(self, job: Job) -> set[str]:
        if job.id not in self._keys:
            try:
                self._keys[job.id] = self.keys(job)
            except Exception:  # an invalid graph has no keys; it fails when it runs, with its problems
                self._keys[job.id] = set()
        return self._keys[job.id]

    def _start(self, worker: str, job: Job) -> None:
        now = self.clock()
        self.running[worker] = Running(job, now, beat=now)
        self._next_worker = (self.backend.names.index(worker) + 1) % len(self.backend.names)
        settings = {**self.settings, **(job.meta.get("settings") or {})}
        self.backend.submit(worker, job.graph, job.targets, settings)
        self.store.add_event(job.id, {"event": "job_started", "worker": worker, "attempt": job.attempt})

    # -- what workers say ----------------------------------------------------------------------------
    def _record(self, worker: str, event: dict[str, Any]) -> None:
        run = self.running.get(worker)
        if run is None:
            return
        kind = event.get("event")
        if kind in (EventKind.FINISHED, EventKind.CACHED) and event.get("key"):
            self.warm.setdefault(worker, set()).add(event["key"])
            if kind == EventKind.FINISHED:
                self.stats.ran += 1
            else:
                self.stats.cached += 1
        if kind == EventKind.RUN_DONE or kind == LOST:
            self._end(worker, run, event)
            return
        if kind in QUIET:
            return
        kept = jsonable({k: v for k, v in event.items() if k != "run"})
        self.store.add_event(run.job.id, kept)
        if kind == EventKind.OUTPUT and kept.get("path"):
            self.store.add_artifact(run.job.id, kept["path"], kept.get("node"))
        if self.on_event is not None:
            self.on_event(run.job, kept)

    def _end(self, worker: str, run: Running, event: dict[str, Any]) -> None:
        del self.running[worker]
        owner, job_id = self._owner(worker), run.job.id
        status = event.get("status")
        if event.get("event") == LOST or (status == "killed" and run.cancel_asked is None):
            self.warm[worker] = set()  # a new process: nothing is warm
            why = event.get("error") or "its worker stopped"
            if self.store.release(job_id, owner, why):
                self.stats.retried += 1
            else:
                self.stats.failed += 1
            self.store.add_event(job_id, {"event": "job_lost", "worker": worker, "error": why})
            return
        if status == "killed":
            self.warm[worker] = set()
        ended = {"ok": "done", "cancelled": "cancelled", "killed": "cancelled"}.get(str(status), "failed")
        error = None
        if ended == "failed":
            parts = [f"{p.get('node') or 'graph'}: {p.get('message')}" for p in event.get("problems", [])]
            parts += [f"{node or 'engine'}: {text}" for node, text in (event.get("errors") or {}).items()]
            error = "; ".join(parts) or f"run ended as {status}"
        self.store.finish(job_id, ended, error, owner=owner)
        setattr(self.stats, ended, getattr(self.stats, ended) + 1)
        self.stats.per_worker[worker] = self.stats.per_worker.get(worker, 0) + 1
        done = {"event": "job_done", "status": ended, **({"error": error} if error else {})}
        self.store.add_event(job_id, done)
        if self.on_event is not None:
            self.on_event(run.job, done)

    def _cancel(self, worker: str, run: Running, now: float) -> None:
        if run.cancel_asked is None:
            run.cancel_asked = now
            self.backend.cancel(worker)
        elif now - run.cancel_asked > self.kill_after:
            self.backend.kill(worker)  # the backend reports the run as killed: it ends as cancelled


def graph_keys(registry: Any, resolver: Any = None) -> Callable[[Job], set[str]]:
    """A job's node keys (what affinity compares), computed as the worker will (no run, no torch)."""
    from app.engine.keys import compute_keys
    from app.engine.plan import Index, effective_graph, topological_order
    from app.files import FileResolver
    from app.graph import serialize

    resolver = resolver or FileResolver()

    def keys(job: Job) -> set[str]:
        graph, problems = effective_graph(serialize.loads(job.graph, registry), registry)
        index = Index(graph)
        order = topological_order(graph, index) or []
        return set(compute_keys(graph, registry, order, resolver, "", index)[0].values())

    return keys


_ENDED_JOB = Job(0, 0, "", None, {}, "done", 0.0, 0, 0, None, False, None, 0.0, None, None)
