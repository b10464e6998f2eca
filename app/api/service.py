"""What the HTTP API does, without HTTP: the server's state folder (job store, token, outputs, a lock so one
server owns it), submitting graphs and sweeps, job views, and the dispatcher running in a thread.

A server killed and started again on the same state folder puts the jobs it was running back in the queue
(it owns the folder alone: `server.lock`) and finishes every job it had accepted. Graphs that come over
the network read input files only from the state folder's `inputs/`, the working folder and the shipped
assets (confined), and models only from the model roots. Never import torch or Qt here.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine.plan import validate
from app.files import FileResolver, input_dirs
from app.graph import serialize
from app.interop import comfyui
from app.jobs import sweep
from app.jobs.dispatch import Dispatcher, graph_keys
from app.jobs.store import Job, JobStore


class Rejected(ValueError):
    """A submission that cannot run: `problems` says every reason (node, port, message)."""

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class StateBusy(RuntimeError):
    """Another server holds this state folder."""


def token_from(path: Path) -> str:
    """The API token in `path`, created (0600, random) when the file does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    token = path.read_text("utf-8").strip()
    if len(token) < 16:
        raise ValueError(f"{path}: the token is shorter than 16 characters")
    return token


@dataclass
class Submitted:
    batch_id: int
    jobs: list[int]


class Service:
    def __init__(self, state_dir: Path, registry: Any, backend: Any, token_file: Path | None = None) -> None:
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.state / "server.lock", "w")  # noqa: SIM115  (held while the server lives)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StateBusy(f"{self.state}: another nodeloom server is using this state folder") from None
        self.token = token_from(token_file or self.state / "token")
        self.registry = registry
        self.outputs = self.state / "outputs"
        self.resolver = FileResolver(base_dirs=input_dirs(self.state / "inputs"), confined=True)
        self.store = JobStore(self.state / "jobs.sqlite3")
        self.store.recover(every_running=True)  # what the last server was running, it never finished
        settings = {
            "output_dir": str(self.outputs),
            "base_dirs": [str(p) for p in self.resolver.base_dirs],
            "confined": True,
            "source": "<api>",
        }
        self.dispatcher = Dispatcher(self.store, backend, graph_keys(registry, self.resolver), settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the dispatcher's thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nodeloom-dispatch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.dispatcher.step(timeout=0.1)
            if not self.dispatcher.running:
                self._stop.wait(0.1)

    def close(self) -> None:
        if self._stop.is_set() and self._lock_file.closed:
            return  # closed already (the server's shutdown, then its `finally`)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.dispatcher.close()
        self.store.close()
        self._lock_file.close()

    # -- submitting ----------------------------------------------------------------------------------
    def submit(self, body: dict[str, Any]) -> Submitted:
        graph_data = body.get("graph")
        if not isinstance(graph_data, dict):
            raise Rejected("'graph' must be a graph (a JSON object), as graph files hold")
        try:
            if comfyui.kind(graph_data):  # a ComfyUI workflow or prompt: imported first
                graph_data = serialize.to_dict(comfyui.import_workflow(graph_data)[0])
            graph = serialize.loads(json.dumps(graph_data), self.registry, source="<request>")
        except (serialize.GraphFileError, comfyui.WorkflowProblem, KeyError, TypeError, ValueError) as error:
            raise Rejected(f"the graph cannot be read: {error}") from None
        runs = body.get("runs", 1)
        if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
            raise Rejected("'runs' must be a whole number of at least 1")
        try:
            jobs = sweep.expand(
                graph, self.registry, _groups(body.get("sweep")), _sets(body.get("set")), runs
            )
        except sweep.SweepProblem as error:
            raise Rejected(str(error)) from None
        problems = validate(serialize.loads(jobs[0][0], self.registry), self.registry, self.resolver)
        if problems:
            raise Rejected("the graph is not valid", [p.to_json() for p in problems])
        batch, ids = self.store.add_batch(
            [g for g, _ in jobs], source="api", metas=[{"values": v} for _, v in jobs]
        )
        return Submitted(batch, ids)

    # -- reading -------------------------------------------------------------------------------------
    def view(self, job: Job, base_url: str = "") -> dict[str, Any]:
        outputs = [
            {"index": a.index, "path": a.path, "url": f"{base_url}/v1/jobs/{job.id}/outputs/{a.index}"}
            for a in self.store.artifacts(job.id)
        ]
        return {
            "id": job.id,
            "batch_id": job.batch_id,
            "status": job.status,
            "values": job.meta.get("values", {}),
            "outputs": outputs,
            "error": job.error,
            "attempt": job.attempt,
            "created": job.created,
            "started": job.started,
            "ended": job.ended,
        }

    def output_path(self, job_id: int, index: int) -> Path | None:
        """The file of a job's output, only if it is inside the outputs folder."""
        for artifact in self.store.artifacts(job_id):
            if artifact.index == index:
                path = Path(artifact.path).resolve()
                if path.is_relative_to(self.outputs.resolve()) and path.is_file():
                    return path
        return None

    def wait(self, job_ids: list[int], timeout: float) -> bool:
        """Whether every job ended within `timeout` seconds (for tests and `submit --wait`)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(
                (j := self.store.get(i)) is not None and j.status in ("done", "failed", "cancelled")
                for i in job_ids
            ):
                return True
            time.sleep(0.05)
        return False


def _sets(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected("'set' must map NODE.PARAM to a value")
    return value


def _groups(value: Any) -> list[dict[str, list[Any]]]:
    """'sweep': {target: [values]} (each target its own group: they multiply) or [{target: [values], ...}]
    (a list of groups; targets in one group are zipped)."""
    if value is None:
        return []
    groups = [{k: v} for k, v in value.items()] if isinstance(value, dict) else value
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and all(isinstance(v, list) for v in g.values()) for g in groups
    ):
        raise Rejected("'sweep' must map NODE.PARAM to a list of values, or be a list of such maps")
    return groups
