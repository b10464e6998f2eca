"""The Ray backend (`--backend ray [--ray-address ADDR]`; the optional extra `nodeloom[ray]`, ray==2.60.0):
Ray Core actors only, one per device (`num_gpus=1` for a CUDA device, so Ray sets its
CUDA_VISIBLE_DEVICES; `num_cpus=0`, so actors never hold the CPUs tasks need), each a long-lived executor
with its memory store over the shared disk store (app/engine/worker.execute, the local worker's code).

A job's events stream back from a generator method; a thread per actor drains it into one queue. Cancel is
a second, concurrent method (`max_concurrency=2`) that sets the run's flag; kill is `ray.kill` with restart
(the actor comes back empty, `max_restarts=-1`); an actor that dies mid-job is reported as lost and the
dispatcher gives the job back. Retries belong to the dispatcher (`max_task_retries=0`).

Without an address a local Ray instance starts bound to loopback, with no dashboard and no token file
written to the home folder. Never import torch or Qt here.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any

from app.engine.events import EventKind
from app.engine.worker import DEFAULT_REGISTRY, drain
from app.jobs.dispatch import LOST
from app.jobs.local import default_threads, worker_names

TIMEOUT = 60.0  # seconds any single Ray call may take before the backend gives up on it


class GraphWorker:
    """The actor's class (wrapped by `ray.remote` in RayBackend)."""

    def __init__(self, cache_dir: str | None, threads: int, registry: str, memory_budget: int) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # before any node loads torch
        from app.engine.executor import Executor
        from app.engine.store import DiskStore, MemoryStore
        from app.engine.worker import CAPACITY, _load_registry, named

        self.registry = _load_registry(registry)
        disk = DiskStore(cache_dir, 2 * 1024**3) if cache_dir else None
        self.executor = Executor(
            self.registry, memory=MemoryStore(memory_budget), disk=disk, capacity=named(CAPACITY)
        )
        self.flag = threading.Event()

    def pid(self) -> int:
        return os.getpid()

    def run(self, job: dict[str, Any]):
        from app.engine.worker import execute

        self.flag.clear()
        found: queue.Queue = queue.Queue()
        token = _Token(self.flag)
        done: dict[str, Any] = {}

        def emit(event: dict[str, Any]) -> None:
            if event["event"] != EventKind.PREVIEW:
                found.put(event)

        thread = threading.Thread(
            target=lambda: done.update(execute(self.executor, self.registry, job, emit, token))
        )
        thread.start()
        while thread.is_alive() or not found.empty():
            try:
                yield found.get(timeout=0.05)
            except queue.Empty:
                continue
        thread.join()
        yield {"event": EventKind.RUN_DONE, **done}

    def cancel(self) -> None:
        self.flag.set()


class _Token:
    def __init__(self, flag: threading.Event) -> None:
        self._flag = flag

    def cancel(self) -> None:
        self._flag.set()

    def cancelled(self) -> bool:
        return self._flag.is_set()


def start_ray(address: str | None = None) -> bool:
    """Connect to `address`, or start a local instance on loopback (no dashboard, no home-folder token);
    False when Ray was already running in this process (then the caller must not shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # bind 127.0.0.1, not the LAN address
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only: no ~/.ray/auth_token
    ray.init(
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 2**20,
        _temp_dir=tempfile.mkdtemp(prefix="nlray", dir="/tmp"),  # Unix socket paths must stay short
    )
    return True


class RayBackend:
    def __init__(
        self,
        devices: list[str],
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        address: str | None = None,
        registry: str = DEFAULT_REGISTRY,
        memory_budget: int = 4 * 1024**3,
    ) -> None:
        import ray

        self._ray = ray
        self._owns = start_ray(address)
        self.names = worker_names(devices)
        threads = threads or default_threads(devices)
        self.actors: dict[str, Any] = {}
        self.devices: dict[str, str] = {}
        for name, device in zip(self.names, devices, strict=True):
            gpu = device.startswith("cuda")
            options = {"num_cpus": 0, "num_gpus": 1 if gpu else 0, "max_restarts": -1, "max_task_retries": 0,
                       "max_concurrency": 2}  # fmt: skip
            remote = ray.remote(**options)(GraphWorker)
            self.actors[name] = remote.remote(
                str(cache_dir) if cache_dir else None, threads, registry, memory_budget
            )
            self.devices[name] = "cuda" if gpu else device  # Ray shows each actor only its own GPU
        self._events: queue.Queue = queue.Queue()
        self._killed: set[str] = set()

    def pid(self, worker: str) -> int:
        return self._ray.get(self.actors[worker].pid.remote(), timeout=TIMEOUT)

    def submit(self, worker: str, graph: str, targets: list[str] | None, settings: dict[str, Any]) -> None:
        job = {**settings, "graph": graph, "targets": targets, "device": self.devices[worker]}
        stream = self.actors[worker].run.remote(job)
        self._killed.discard(worker)
        threading.Thread(target=self._drain, args=(worker, stream), daemon=True).start()

    def _drain(self, worker: str, stream: Any) -> None:
        try:
            for ref in stream:
                self._events.put((worker, self._ray.get(ref, timeout=TIMEOUT)))
        except Exception as error:  # the actor died (or was killed) mid-job
            if worker in self._killed:
                stopped = {"event": EventKind.RUN_DONE, "status": "killed", "problems": [], "errors": {}}
                self._events.put((worker, stopped))
            else:
                self._events.put(
                    (worker, {"event": LOST, "error": f"its Ray actor died ({type(error).__name__})"})
                )

    def events(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        return drain(self._events, timeout)

    def cancel(self, worker: str) -> None:
        self.actors[worker].cancel.remote()

    def kill(self, worker: str) -> None:
        self._killed.add(worker)
        self._ray.kill(self.actors[worker], no_restart=False)

    def close(self) -> None:
        for actor in self.actors.values():
            self._ray.kill(actor, no_restart=True)
        if self._owns:
            self._ray.shutdown()
