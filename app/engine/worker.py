"""Runs graphs in a worker process, so the editor never blocks and Cancel can always stop a run.

Why a process and not a thread:
- a node that ignores `cancelled()` (one long torch call) can still be hard-stopped: `kill()` ends the
  process and the next run starts a fresh one, which finds earlier results in the disk cache;
- torch, CUDA and model weights live in the worker; a native crash there does not take the editor down;
- the editor process never imports torch.
The price: the memory store lives in the worker, so the editor learns which keys are cached from the
`key` field of `cached`/`finished` events (keys are pure and cheap to recompute in the editor).

The worker is started with the "spawn" method (never fork a process that runs Qt). Jobs and events are
plain data: graph JSON in, event dicts out (previews carry small numpy arrays, at most ~4 per second per
node). Besides the executor's events the worker sends `image` (the first picture of a node's IMAGE output,
uint8, after it finished or was found cached: the editor keeps only results it can show) and, after each
run, `device` (CUDA name or CPU and the memory in use, read from torch only if a node already loaded it).
Never import torch or Qt here: nodes load torch in the worker process (its thread count set before, by
`threads`).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import Any

from app.engine.events import EventKind

DEFAULT_REGISTRY = "app.registry:default_registry"
CAPACITY = "app.runtime.device:capacity"  # what a device has free, for the run estimate
PREVIEW_INTERVAL = 0.25  # seconds between step previews of one node


class _FlagToken:
    """The executor's cancel token over a multiprocessing Event."""

    def __init__(self, flag: Any) -> None:
        self._flag = flag

    def cancel(self) -> None:
        self._flag.set()

    def cancelled(self) -> bool:
        return self._flag.is_set()


def named(spec: str) -> Any:
    """The object `module:name` names (the worker is told its registry and device probe this way, so the
    engine layer imports neither the node families nor the runtime)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _load_registry(spec: str):
    return named(spec)()


PARENT_CHECK = 1.0  # seconds between checks that the editor that started the worker still lives


def _exit_with_parent() -> None:
    """End this worker process as soon as the process that started it is gone (killed editor, crash),
    even in the middle of a run: nobody is left to read its results, and it may hold GBs of weights."""
    import os
    import threading

    parent = mp.parent_process()

    def watch() -> None:
        while parent is None or parent.is_alive():
            time.sleep(PARENT_CHECK)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(jobs: Any, events: Any, flag: Any, options: dict[str, Any]) -> None:
    from app.engine.executor import Executor
    from app.engine.store import DiskStore, MemoryStore

    _exit_with_parent()
    if options.get("threads"):  # explicit: two torch threads on two busy cores ran ~80x slower than one
        import os

        os.environ["OMP_NUM_THREADS"] = str(options["threads"])  # read when torch first loads, below
    quiet = bool(options.get("headless"))  # no step previews or pictures over the pipe
    if quiet:  # a terminal's Ctrl-C or a service manager's SIGTERM goes to the process that started the
        import signal  # worker: it cancels, gives jobs back and then ends its workers (`kill`)

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    registry = _load_registry(options["registry"])
    disk = DiskStore(options["cache_dir"], options["disk_cap"]) if options.get("cache_dir") else None
    executor = Executor(
        registry, memory=MemoryStore(options["memory_budget"]), disk=disk, capacity=named(CAPACITY)
    )
    events.put({"event": EventKind.WORKER_READY})
    while True:
        job = jobs.get()
        if job is None:
            return
        run_id = job["run"]  # the cancel flag is cleared by `submit`, so a cancel sent early still counts
        last_preview: dict[str, float] = {}

        def emit(event: dict[str, Any], run_id: int = run_id, last_preview: dict = last_preview) -> None:
            if quiet and event["event"] == EventKind.PREVIEW:
                return
            if event["event"] == EventKind.PREVIEW:
                now = time.monotonic()
                final = event.get("step") is not None and event.get("step") == event.get("total")
                if not final and now - last_preview.get(event["node"], -1.0) < PREVIEW_INTERVAL:
                    return
                last_preview[event["node"]] = now
            events.put({**event, "run": run_id})
            if not quiet and event["event"] in (EventKind.FINISHED, EventKind.CACHED) and event.get("key"):
                picture = first_image(executor.memory.get(event["key"]))
                if picture is not None:
                    events.put({"event": EventKind.IMAGE, "node": event["node"], "run": run_id, **picture})

        done = execute(executor, registry, job, emit, _FlagToken(flag))
        events.put({"event": EventKind.DEVICE, "run": run_id, **_device_info()})
        events.put({"event": EventKind.RUN_DONE, "run": run_id, **done})


def execute(executor: Any, registry: Any, job: dict[str, Any], emit: Any, token: Any) -> dict[str, Any]:
    """Run one job (graph JSON and its settings) on a long-lived executor; the `run_done` fields. Shared by
    this worker process and the Ray actor (app/jobs/ray_backend.py)."""
    from app.engine.context import RunSettings
    from app.files import FileResolver
    from app.graph import serialize

    try:
        graph = serialize.loads(job["graph"], registry, source=job.get("source", "<editor>"))
        settings = RunSettings(
            device=job.get("device", "auto"),
            output_dir=Path(job.get("output_dir", "output")),
            save_outputs=bool(job.get("save_outputs", True)),
            allow_large=bool(job.get("allow_large", False)),
            graph_json=job["graph"],
            resolver=FileResolver(
                base_dirs=tuple(Path(p) for p in job.get("base_dirs", [Path.cwd()])),
                confined=bool(job.get("confined", False)),
            ),
        )
        result = executor.run(graph, job.get("targets"), settings, emit, token)
        return {
            "status": result.status,
            "problems": [p.to_json() for p in result.problems],
            "errors": result.errors,
        }
    except Exception as error:  # a bug in the engine itself: report it, keep serving
        return {"status": "error", "problems": [], "errors": {"": f"{type(error).__name__}: {error}"}}


BATCH_SHOWN = 16  # pictures of a batch sent to the editor (its grid and arrows)


def first_image(outputs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The first IMAGE-shaped output (numpy B, H, W, 3 in 0..1) as uint8: its first picture (`image`),
    its size (`batch`) and, for a batch, its first BATCH_SHOWN pictures (`images`)."""
    import numpy as np

    for port, value in (outputs or {}).items():
        if isinstance(value, np.ndarray) and value.ndim == 4 and value.shape[-1] == 3 and len(value):
            pictures = (np.clip(value[:BATCH_SHOWN], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            found = {"port": port, "image": pictures[0], "batch": int(value.shape[0])}
            if len(value) > 1:
                found["images"] = list(pictures)
            return found
    return None


def _device_info() -> dict[str, Any]:
    """The device runs use and the memory in use, without importing torch (only if a node did)."""
    import os
    import sys

    rss = 0
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    torch = sys.modules.get("torch")
    if torch is None:
        return {"device": "not chosen yet (no model has run)", "memory": rss, "memory_kind": "process"}
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        return {
            "device": f"CUDA {torch.cuda.get_device_name(index)}",
            "memory": int(torch.cuda.memory_allocated(index)),
            "memory_total": int(torch.cuda.get_device_properties(index).total_memory),
            "memory_kind": "cuda",
        }
    return {"device": "CPU", "memory": rss, "memory_kind": "process"}


class Worker:
    """Client side: `submit` graphs, `cancel` (cooperative), `kill` (hard), `events` to drain."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        disk_cap: int = 2 * 1024**3,
        memory_budget: int = 4 * 1024**3,
        registry: str = DEFAULT_REGISTRY,
        threads: int | None = None,
        headless: bool = False,  # sweeps and the server: no previews or pictures; ignores SIGINT/SIGTERM
    ) -> None:
        self._context = mp.get_context("spawn")
        self._options = {
            "cache_dir": str(cache_dir) if cache_dir else None,
            "disk_cap": disk_cap,
            "memory_budget": memory_budget,
            "registry": registry,
            "threads": threads,
            "headless": headless,
        }
        self._process: Any = None
        self._runs = 0
        self.running: int | None = None

    def _start(self) -> None:
        self._jobs = self._context.Queue()
        self._events = self._context.Queue()
        self._flag = self._context.Event()
        self._process = self._context.Process(
            target=_serve,
            args=(self._jobs, self._events, self._flag, self._options),
            daemon=True,
            name="nodeloom-worker",
        )
        self._process.start()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def submit(self, graph_json: str, targets: list[str] | None = None, **settings: Any) -> int:
        """Queue a run; returns its id (events carry it as `run`)."""
        if not self.alive:
            self._start()
        self._runs += 1
        self.running = self._runs
        self._flag.clear()  # here, not in the worker: a cancel sent before the worker takes the job holds
        self._jobs.put({"run": self._runs, "graph": graph_json, "targets": targets, **settings})
        return self._runs

    def cancel(self) -> None:
        """Ask the run in flight to stop at its next node or step boundary."""
        if self.alive:
            self._flag.set()

    def kill(self) -> list[dict[str, Any]]:
        """End the worker now (for a node that ignores cancel); the next submit starts a new one."""
        if self._process is None:
            return []
        if self._options["headless"]:  # it ignores SIGTERM (see _serve)
            self._process.kill()
        else:
            self._process.terminate()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None
        stopped = [
            {
                "event": EventKind.RUN_DONE,
                "run": self.running,
                "status": "killed",
                "problems": [],
                "errors": {},
            }
        ]
        self.running = None
        return stopped

    def events(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Every event available now (waiting up to `timeout` seconds for the first one)."""
        if self._process is None:
            return []
        found: list[dict[str, Any]] = drain(self._events, timeout)
        for event in found:
            if event["event"] == EventKind.RUN_DONE and event.get("run") == self.running:
                self.running = None
        return found

    def close(self) -> None:
        if self.alive:
            self._jobs.put(None)
            self._process.join(5)
        if self._process is not None and self._process.is_alive():
            self.kill()
        self._process = None


def drain(events: Any, timeout: float = 0.0) -> list[Any]:
    """Every item a queue holds now, waiting up to `timeout` seconds for the first one."""
    found: list[Any] = []
    try:
        found.append(events.get(timeout=timeout) if timeout else events.get_nowait())
        while True:
            found.append(events.get_nowait())
    except queue.Empty:
        pass
    return found
