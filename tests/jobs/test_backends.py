"""One contract for every backend, on real workers and the embedded model: a 4-seed sweep reuses the
prefix nodes on jobs 2-4, a cancel stops a job mid-sampler, a worker killed mid-job has its job retried to
done. Run against the local backend (worker processes) and, when Ray is installed, Ray actors."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from app.files import FileResolver, input_dirs
from app.graph import serialize
from app.jobs import JobStore, sweep
from app.jobs.dispatch import Dispatcher, graph_keys
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = default_registry()
PREFIX = {"model", "prompt", "negative", "schedule", "guidance", "latent"}
BACKENDS = ["local", "ray"]


@pytest.fixture
def make_backend(request):
    """A backend of the test's kind; Ray runs once per test session (tests/jobs/conftest.py)."""
    kind = request.node.callspec.params["kind"]
    made = []

    def make():
        if kind == "ray":
            from app.jobs.ray_backend import RayBackend

            request.getfixturevalue("ray_session")
            made.append(RayBackend(["cpu"], None, threads=1))
        else:
            from app.jobs.local import LocalBackend

            made.append(LocalBackend(["cpu"], None, threads=1))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


def _kill_process(backend, worker) -> None:
    pid = backend.pid(worker) if hasattr(backend, "pid") else backend.workers[worker]._process.pid
    os.kill(pid, signal.SIGKILL)


def _jobs(tmp_path, seeds, steps):
    graph = serialize.load(ROOT / "graphs" / "txt2img.json", REGISTRY)
    sets = {"schedule.steps": str(steps), "latent.width": "64", "latent.height": "64"}
    jobs = sweep.expand(graph, REGISTRY, [{"sampler.seed": [str(s) for s in seeds]}], sets)
    store = JobStore(tmp_path / "jobs.sqlite3")
    _, ids = store.add_batch([g for g, _ in jobs], source="sweep", metas=[{"values": v} for _, v in jobs])
    return store, ids


def _dispatcher(store, backend, tmp_path, on_event=None):
    resolver = FileResolver(base_dirs=input_dirs(ROOT / "graphs"))
    settings = {"output_dir": str(tmp_path / "out"), "base_dirs": [str(p) for p in resolver.base_dirs]}
    return Dispatcher(
        store, backend, graph_keys(REGISTRY, resolver), settings, kill_after=5.0, on_event=on_event
    )


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_seed_sweep_reuses_the_prefix_on_one_warm_worker(kind, make_backend, tmp_path):
    store, ids = _jobs(tmp_path, [1, 2, 3, 4], steps=3)
    dispatcher = _dispatcher(store, make_backend(), tmp_path)
    dispatcher.run(ids)
    assert [store.get(i).status for i in ids] == ["done"] * 4
    for index, job_id in enumerate(ids):
        events = [e for _, e in store.events(job_id)]
        cached = {e["node"] for e in events if e["event"] == "cached"}
        ran = {e["node"] for e in events if e["event"] == "finished"}
        if index == 0:
            assert PREFIX <= ran
        else:
            assert cached == PREFIX and ran == {"sampler", "decode", "save"}
    paths = [a.path for i in ids for a in store.artifacts(i)]
    assert len(set(paths)) == 4 and all(Path(p).is_file() for p in paths)


@pytest.mark.parametrize("kind", BACKENDS)
def test_cancel_mid_sampler_and_a_killed_worker_retried(kind, make_backend, tmp_path):
    store, ids = _jobs(tmp_path, [5, 6], steps=300)  # long enough to act mid-sampler
    backend = make_backend()
    acted = []

    def on_event(job, event):
        if event.get("event") == "started" and event.get("node") == "sampler" and job.attempt == 1:
            if job.id == ids[0] and "cancel" not in acted:
                acted.append("cancel")
                store.cancel(job.id)
            elif job.id == ids[1] and "kill" not in acted:
                acted.append("kill")
                _kill_process(backend, next(iter(dispatcher.running)))

    dispatcher = _dispatcher(store, backend, tmp_path, on_event)
    dispatcher.run(ids)
    cancelled, retried = store.get(ids[0]), store.get(ids[1])
    assert cancelled.status == "cancelled" and cancelled.ended - cancelled.started < 60
    assert retried.status == "done" and retried.attempt == 2
    kinds = [e["event"] for _, e in store.events(ids[1])]
    assert "job_lost" in kinds and kinds.count("job_started") == 2 and kinds[-1] == "job_done"
    assert acted == ["cancel", "kill"]
