"""Headless at scale, side by side in one run: a seed sweep of graphs/txt2img.json (embedded tiny-shapes
model, 64x64, Euler) as N separate `nodeloom run` processes, as one `nodeloom sweep` worker, on 2 local
workers and on 2 Ray actors; 4 prompts x 16 seeds with affinity against round robin (text encodings, wall);
2 checkpoints x 32 seeds with affinity against FIFO (model loads and model switches per worker); the
dispatcher's own cost per job; server-sent event latency. Every line names the device.

    .venv/bin/python bench/sweep_scale.py [--images 64] [--steps 10] [--naive 64] [--skip-ray]

Torch runs one thread per worker (OMP_NUM_THREADS=1): two threads on two cores ran ~80x slower here.
Prints numbers; never a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["OMP_NUM_THREADS"] = "1"

from app.files import FileResolver, input_dirs  # noqa: E402
from app.graph import serialize  # noqa: E402
from app.jobs import JobStore, sweep  # noqa: E402
from app.jobs.dispatch import Dispatcher, graph_keys  # noqa: E402
from app.registry import default_registry  # noqa: E402

GRAPH = ROOT / "graphs" / "txt2img.json"
REGISTRY = default_registry()
DEVICE = f"CPU, {os.cpu_count()} cores, 1 torch thread per worker"


def naive(images: int, steps: int, work: Path) -> float:
    started = time.monotonic()
    for seed in range(1, images + 1):
        subprocess.run(
            [sys.executable, "-m", "app", "run", str(GRAPH), "--set", f"sampler.seed={seed}", "--set",
             f"schedule.steps={steps}", "--no-disk-cache", "-o", str(work / "naive")],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    return time.monotonic() - started


def _backend(kind: str, workers: int):
    if kind == "ray":
        from app.jobs.ray_backend import RayBackend

        return RayBackend(["cpu"] * workers, None, threads=1)
    from app.jobs.local import LocalBackend

    return LocalBackend(["cpu"] * workers, None, threads=1)


def run_sweep(work: Path, groups, sets, kind="local", workers=1, affinity=True) -> dict:
    """Runs the sweep; wall time, first-job and steady s/job, and what each worker ran (node names)."""
    graph = serialize.load(GRAPH, REGISTRY)
    jobs = sweep.expand(graph, REGISTRY, groups, sets)
    folder = Path(tempfile.mkdtemp(dir=work))
    store = JobStore(folder / "jobs.sqlite3")
    _, ids = store.add_batch([g for g, _ in jobs], source="bench", metas=[{"values": v} for _, v in jobs])
    resolver = FileResolver(base_dirs=input_dirs(GRAPH.parent))
    settings = {"output_dir": str(folder / "out"), "base_dirs": [str(p) for p in resolver.base_dirs]}
    backend = _backend(kind, workers)
    dispatcher = Dispatcher(store, backend, graph_keys(REGISTRY, resolver), settings, affinity=affinity)
    started = time.monotonic()
    dispatcher.run(ids)
    wall = time.monotonic() - started
    dispatcher.close()
    ran: dict[str, list[list[str]]] = {}
    values: dict[str, list[tuple[float, dict]]] = {}  # per worker: (started, values)
    durations = []
    for job_id in ids:
        events = [e for _, e in store.events(job_id)]
        worker = next(e["worker"] for e in events if e["event"] == "job_started")
        ran.setdefault(worker, []).append([e["node"] for e in events if e["event"] == "finished"])
        job = store.get(job_id)
        values.setdefault(worker, []).append((job.started, job.meta["values"]))
        durations.append(job.ended - job.started)
    store.close()
    return {"wall": wall, "first": durations[0], "steady": statistics.median(durations[1:] or durations),
            "ran": ran, "values": values, "stats": dispatcher.stats}  # fmt: skip


def overhead(work: Path, count: int = 500) -> float:
    """Milliseconds of store + dispatcher work per job, with a backend that runs nothing."""

    class Instant:
        names = ["a", "b"]

        def __init__(self) -> None:
            self.current = {}

        def submit(self, worker, graph, targets, settings):
            self.current[worker] = True

        def events(self, timeout):
            done = [
                (w, {"event": "run_done", "status": "ok", "problems": [], "errors": {}}) for w in self.current
            ]
            self.current = {}
            return done

        def cancel(self, worker): ...
        def kill(self, worker): ...
        def close(self): ...

    store = JobStore(Path(tempfile.mkdtemp(dir=work)) / "jobs.sqlite3")
    _, ids = store.add_batch(["{}"] * count, source="bench")
    started = time.monotonic()
    Dispatcher(store, Instant(), affinity=False).run(ids)
    return (time.monotonic() - started) / count * 1000


def sse_latency(work: Path, samples: int = 20) -> list[float]:
    """Seconds from an event stored to the same event read from GET /v1/jobs/{id}/events."""
    from fastapi.testclient import TestClient

    from app.api.routes import create_app
    from app.api.service import Service

    class Idle:
        names = ["a"]

        def submit(self, *a): ...
        def events(self, timeout):
            time.sleep(timeout)
            return []

        def cancel(self, w): ...
        def kill(self, w): ...
        def close(self): ...

    service = Service(Path(tempfile.mkdtemp(dir=work)), REGISTRY, Idle())
    client = TestClient(create_app(service))
    job = service.store.add_batch([serialize.dumps(serialize.load(GRAPH, REGISTRY))], source="bench")[1][0]
    service.store.claim("bench", job_id=job)
    sent: dict[int, float] = {}
    got: list[float] = []

    def read() -> None:
        headers = {"Authorization": f"Bearer {service.token}"}
        with client.stream("GET", f"/v1/jobs/{job}/events", headers=headers) as answer:
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    index = json.loads(line[6:])["index"]
                    got.append(time.monotonic() - sent[index])
                    if len(got) == samples:
                        return

    reader = threading.Thread(target=read)
    reader.start()
    for index in range(samples):
        sent[index] = time.monotonic()
        service.store.add_event(job, {"event": "progress", "index": index})
        time.sleep(0.13)
    service.store.finish(job, "done")
    reader.join(30)
    service.close()
    return got


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--naive", type=int, default=None, help="separate runs to time (default: --images)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nodeloom-bench-"))
    sets = {"schedule.steps": str(args.steps)}
    seeds = [{"sampler.seed": [str(s) for s in range(1, args.images + 1)]}]
    print(f"# sweep_scale: {args.images}-image seed sweep, {args.steps} steps, 64x64; {DEVICE}")
    count = args.naive or args.images
    separate = naive(count, args.steps, work) * args.images / count
    one = run_sweep(work, seeds, sets)
    two = run_sweep(work, seeds, sets, workers=2)
    print(f"separate `nodeloom run` x{count}: {separate:.1f} s for {args.images} (scaled from {count})")
    print(f"sweep, 1 local worker: {one['wall']:.1f} s  ({separate / one['wall']:.1f}x faster; first job "
          f"{one['first']:.2f} s, then {one['steady']:.3f} s/job)")  # fmt: skip
    print(f"sweep, 2 local workers: {two['wall']:.1f} s  ({one['wall'] / two['wall']:.2f}x of 1 worker)")
    if not args.skip_ray:
        ray_two = run_sweep(work, seeds, sets, kind="ray", workers=2)
        print(
            f"sweep, 2 Ray actors: {ray_two['wall']:.1f} s  ({one['wall'] / ray_two['wall']:.2f}x of 1 local worker)"
        )
    prompts = [{"prompt.text": [f"a {c} circle on a black background" for c in ("red", "green", "blue", "white")]},
               {"sampler.seed": [str(s) for s in range(16)]}]  # fmt: skip
    for affinity in (True, False):
        result = run_sweep(work, prompts, sets, workers=2, affinity=affinity)
        encodes = sum(nodes.count("prompt") for jobs in result["ran"].values() for nodes in jobs)
        name = "affinity" if affinity else "round robin"
        print(f"4 prompts x 16 seeds, 2 workers, {name}: {encodes} prompt encodings, {result['wall']:.1f} s")
    models = Path(tempfile.mkdtemp(dir=work))
    shutil.copytree(ROOT / "assets" / "models" / "tiny-shapes", models / "tiny-shapes-b")
    os.environ["NODELOOM_MODEL_ROOTS"] = str(models)
    checkpoints = [{"model.checkpoint": ["tiny-shapes", "tiny-shapes-b"] * 32}]  # interleaved, as users queue
    for affinity in (True, False):
        result = run_sweep(work, checkpoints, {**sets, "schedule.steps": "2"}, workers=2, affinity=affinity)
        loads = sum(nodes.count("model") for jobs in result["ran"].values() for nodes in jobs)
        switches = 0  # a job on a worker whose previous job used the other checkpoint: a reload on a GPU
        for jobs in result["values"].values():  # that holds one model at a time
            names = [v["model.checkpoint"] for _, v in sorted(jobs, key=lambda item: item[0])]
            switches += 1 + sum(1 for a, b in zip(names, names[1:], strict=False) if a != b)
        name = "affinity" if affinity else "FIFO"
        print(f"2 checkpoints x 32 seeds (interleaved), 2 workers, {name}: {loads} model loads (memory holds "
              f"both here), {switches} model switches, {result['wall']:.1f} s")  # fmt: skip
    print(f"dispatcher + store per job (nothing run): {overhead(work):.2f} ms")
    latency = sorted(sse_latency(work))
    print(f"SSE event latency: p50 {latency[len(latency) // 2] * 1000:.0f} ms, "
          f"p95 {latency[int(len(latency) * 0.95) - 1] * 1000:.0f} ms (the route polls every 200 ms)")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
