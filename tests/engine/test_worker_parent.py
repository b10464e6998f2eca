"""A worker process ends by itself when the process that started it dies (a killed editor), also while a
run is in flight, instead of holding its memory for minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARENT = """
import json, sys, time
from app.engine.worker import Worker
worker = Worker(cache_dir=None, registry="tests.ui.run_nodes:registry")
graph = {"schema_version": 1, "nodes": {
    "shape": {"type": "shapes.draw", "version": 1, "params": {"width": 16, "height": 16}},
    "dark": {"type": "t.darken", "version": 1, "params": {"steps": 1000, "delay": 0.05}}},
    "edges": [{"from": ["shape", "image"], "to": ["dark", "image"]}]}
worker.submit(json.dumps(graph), ["dark"])
while not any(e["event"] == "progress" for e in worker.events()):
    time.sleep(0.05)
print(worker._process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_the_worker_exits_when_its_parent_is_killed_mid_run():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        assert _alive(worker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 15
        while _alive(worker_pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(worker_pid), "the worker outlived its killed parent"
    finally:
        parent.kill()
