"""The local backend: one worker process per device on this machine (app/engine/worker.py, the editor's own
worker), each with its memory store over the shared disk store, its torch thread count set explicitly.

`--devices cpu` is one CPU worker; `cpu,cpu` two; `cuda:0,cuda:1` one per GPU. Threads default to the
machine's cores shared among the CPU workers (at least one each). Never import torch or Qt here.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import Any

from app.engine.worker import DEFAULT_REGISTRY, Worker
from app.jobs.dispatch import LOST


def parse_devices(text: str) -> list[str]:
    """Worker devices from `cpu`, `cpu,cpu`, `cuda:0,cuda:1`, `auto` (ValueError names a bad one)."""
    devices = [part.strip() for part in text.split(",") if part.strip()]
    for device in devices:
        if device not in ("auto", "cpu", "cuda", "mps") and not (
            device.startswith("cuda:") and device[5:].isdigit()
        ):
            raise ValueError(f"unknown device {device!r} (cpu, cuda, cuda:N, mps or auto)")
    if not devices:
        raise ValueError("no devices given")
    return devices


def default_threads(devices: list[str]) -> int:
    cpu_workers = sum(1 for d in devices if d in ("cpu", "auto")) or 1
    return max(1, (os.cpu_count() or 1) // cpu_workers)


def worker_names(devices: list[str]) -> list[str]:
    """`cpu`, `cpu#2`, ... : a name per worker, the device first."""
    names, seen = [], {}
    for device in devices:
        seen[device] = seen.get(device, 0) + 1
        names.append(device if seen[device] == 1 else f"{device}#{seen[device]}")
    return names


class LocalBackend:
    def __init__(
        self,
        devices: list[str],
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        registry: str = DEFAULT_REGISTRY,
        memory_budget: int = 4 * 1024**3,
    ) -> None:
        self.names = worker_names(devices)
        self.devices = dict(zip(self.names, devices, strict=True))
        threads = threads or default_threads(devices)
        self.workers = {
            name: Worker(
                cache_dir, memory_budget=memory_budget, registry=registry, threads=threads, headless=True
            )
            for name in self.names
        }
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def submit(self, worker: str, graph: str, targets: list[str] | None, settings: dict[str, Any]) -> None:
        self.workers[worker].submit(graph, targets, **{**settings, "device": self.devices[worker]})

    def events(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        found, self._pending = self._pending, []
        busy = [name for name, w in self.workers.items() if w.running is not None]
        for index, name in enumerate(busy):
            worker = self.workers[name]
            try:  # wait (a little) only on the first busy worker; the others are drained as they are
                got = worker.events(timeout if index == 0 and not found else 0.0)
            except (OSError, EOFError, queue.Empty):
                got = []
            found += [(name, event) for event in got]
            if worker.running is not None and not worker.alive and not got:
                worker.running = None
                found.append(
                    (name, {"event": LOST, "error": "its worker process ended (crashed or was killed)"})
                )
        return found

    def cancel(self, worker: str) -> None:
        self.workers[worker].cancel()

    def kill(self, worker: str) -> None:
        self._pending += [(worker, e) for e in self.workers[worker].kill()]

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
