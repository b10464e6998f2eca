"""`nodeloom sweep`: one graph run many times with different values, on warm workers, without a server.

    nodeloom sweep graphs/txt2img.json --sweep sampler.seed=1..64 -o out/
    nodeloom sweep GRAPH --sweep prompt.text=@prompts.txt --zip negative.text=@negatives.txt \\
        --sweep sampler.seed=1,2,3 --runs 2 --devices cpu,cpu

Each `--sweep` starts a group; `--zip` adds a target to the group before it (zipped: equal lengths); groups
multiply, `--runs` repeats (app/jobs/sweep.py). Jobs go to a job store (a temporary one unless
`--state-dir`), the dispatcher hands them to the workers (app/jobs/dispatch.py: model affinity), and a
progress line and a summary (images, seconds per image, nodes reused) follow. Never import torch or Qt here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.engine.plan import validate
from app.files import FileResolver, input_dirs
from app.jobs import sweep
from app.jobs.dispatch import Dispatcher, graph_keys
from app.jobs.store import JobStore
from app.registry import Registry

EXIT_OK, EXIT_USAGE, EXIT_INVALID, EXIT_RUNTIME, EXIT_CANCELLED = 0, 2, 3, 4, 130


class _Group(argparse.Action):
    """--sweep starts a group, --zip joins the last one: the order of the flags is kept."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        groups = getattr(namespace, self.dest) or []
        if option_string == "--zip":
            if not groups:
                parser.error("--zip joins the --sweep before it; give a --sweep first")
            groups[-1].append(value)
        else:
            groups.append([value])
        setattr(namespace, self.dest, groups)


def add_sweep_flags(p: argparse.ArgumentParser) -> None:
    """GRAPH, --set, --sweep, --zip, --runs: what `sweep` and `submit` share."""
    p.add_argument("graph")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE")
    for flag, text in (
        ("--sweep", "values for one param: v1,v2,... | a..b | @file.txt (a new group: groups multiply)"),
        ("--zip", "values zipped with the --sweep before it (same length)"),
    ):
        p.add_argument(flag, dest="groups", action=_Group, default=[], metavar="NODE.PARAM=VALUES", help=text)
    p.add_argument("--runs", type=int, default=1, help="repeat the whole sweep N times")


def add_backend_flags(p: argparse.ArgumentParser, device: Any) -> None:
    """Where jobs run: what `sweep` and `serve` share."""
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="a running Ray cluster (default: start one on this machine)")
    p.add_argument(
        "--devices", help="one worker per device: cpu | cpu,cpu | cuda:0,cuda:1 (default: --device)"
    )
    p.add_argument("--threads", type=int, help="torch threads per worker (default: cores / CPU workers)")
    p.add_argument("--device", default="auto", type=device)
    p.add_argument("--cache-dir")
    p.add_argument("--no-disk-cache", action="store_true")


def add_parser(commands: Any, device: Any) -> None:
    p = commands.add_parser("sweep", help="run a graph for many values (seeds, prompts, ...) on warm workers")
    add_sweep_flags(p)
    add_backend_flags(p, device)
    p.add_argument("-o", "--output", default="output", metavar="OUTDIR")
    p.add_argument("--json-events", action="store_true", help="every job's events, one JSON object a line")
    p.add_argument("--state-dir", help="keep the sweep's job store here (default: a temporary folder)")
    p.add_argument("--no-affinity", action="store_true", help="hand out jobs in queue order (to compare)")


def _split(item: str, flag: str) -> tuple[str, str]:
    target, sep, text = item.partition("=")
    if not sep:
        raise sweep.SweepProblem(f"{flag} {item!r}: expected NODE.PARAM=VALUE")
    return target, text


def sets_and_groups(args: argparse.Namespace) -> tuple[dict[str, str], list[dict[str, list[str]]]]:
    """--set as {target: text}, --sweep / --zip as groups of {target: [texts]} (value lists read)."""
    sets = dict(_split(item, "--set") for item in args.sets)
    groups = []
    for group in args.groups:
        parsed = {}
        for item in group:
            target, text = _split(item, "--sweep")
            parsed[target] = sweep.values_from_text(text)
        groups.append(parsed)
    return sets, groups


def plan_jobs(args: argparse.Namespace, graph: Any, registry: Registry) -> list[tuple[str, dict[str, Any]]]:
    sets, groups = sets_and_groups(args)
    return sweep.expand(graph, registry, groups, sets, args.runs)


def make_backend(args: argparse.Namespace, cache_dir: str | None) -> Any:
    from app.jobs.local import LocalBackend, parse_devices

    devices = parse_devices(args.devices or args.device)
    if args.backend == "ray":
        from app.jobs.ray_backend import RayBackend

        return RayBackend(devices, cache_dir, args.threads, address=args.ray_address)
    return LocalBackend(devices, cache_dir, args.threads)


def cmd_sweep(args: argparse.Namespace, registry: Registry) -> int:
    from app.cli import InvalidGraph, load_graph, results_dir

    graph = load_graph(args.graph, registry, [])
    try:
        jobs = plan_jobs(args, graph, registry)
    except (sweep.SweepProblem, ValueError) as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return EXIT_USAGE
    resolver = FileResolver(base_dirs=input_dirs(Path(args.graph).resolve().parent))
    from app.graph import serialize

    problems = validate(serialize.loads(jobs[0][0], registry), registry, resolver)
    if problems:
        raise InvalidGraph(
            "\n".join([f"{args.graph}: {len(problems)} problem(s)", *[f"  - {p}" for p in problems]])
        )
    state = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="nodeloom-sweep-"))
    store = JobStore(state / "jobs.sqlite3")
    _, ids = store.add_batch([g for g, _ in jobs], source="sweep", metas=[{"values": v} for _, v in jobs])
    cache = None if args.no_disk_cache else str(results_dir(args.cache_dir))
    try:
        backend = make_backend(args, cache)
    except (ValueError, ImportError) as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return EXIT_USAGE
    settings = {
        "output_dir": str(Path(args.output).resolve()),
        "base_dirs": [str(p) for p in resolver.base_dirs],
        "source": args.graph,
    }
    report = _Report(args.json_events, len(ids))
    dispatcher = Dispatcher(
        store,
        backend,
        graph_keys(registry, resolver),
        settings,
        affinity=not args.no_affinity,
        on_event=report.event,
    )
    started = time.monotonic()
    try:
        dispatcher.run(ids, progress=report.progress)
    except KeyboardInterrupt:
        for job_id in ids:
            store.cancel(job_id)
        print("\ncancelled", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        dispatcher.close()
    return report.summary(store, ids, dispatcher.stats, time.monotonic() - started)


class _Report:
    """The progress line on stderr (or JSON events on stdout) and the closing summary."""

    def __init__(self, as_json: bool, total: int) -> None:
        self.as_json, self.total = as_json, total
        self.ended = self.failed = 0
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def event(self, job: Any, event: dict[str, Any]) -> None:
        if self.as_json:
            print(json.dumps({**event, "job": job.id, "values": job.meta.get("values", {})}), flush=True)
        if event.get("event") == "job_done":
            self.ended += 1
            self.failed += event.get("status") == "failed"
            if not self.as_json and event.get("status") == "failed":
                print(
                    f"\njob {job.id} {job.meta.get('values')} failed: {event.get('error')}", file=sys.stderr
                )

    def progress(self) -> None:
        if self.as_json or not self.tty:
            return
        width = 30
        filled = int(width * self.ended / max(1, self.total))
        rate = (time.monotonic() - self.started) / self.ended if self.ended else 0.0
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {self.ended}/{self.total} jobs"
        line += f", {rate:.2f} s/job" if self.ended else ""
        line += f", {self.failed} failed" if self.failed else ""
        print(line, end="", file=sys.stderr, flush=True)

    def summary(self, store: JobStore, ids: list[int], stats: Any, wall: float) -> int:
        jobs = [store.get(i) for i in ids]
        images = sum(len(store.artifacts(i)) for i in ids)
        failed = [j for j in jobs if j is not None and j.status == "failed"]
        cancelled = [j for j in jobs if j is not None and j.status == "cancelled"]
        nodes = stats.ran + stats.cached
        lines = [
            f"{len(ids)} jobs: {len(ids) - len(failed) - len(cancelled)} done, {len(failed)} failed, "
            f"{len(cancelled)} cancelled; {images} images in {wall:.1f} s"
            + (f" ({wall / images:.2f} s/image)" if images else ""),
            f"nodes reused: {stats.cached} of {nodes} from cache, {stats.ran} ran; retried jobs: {stats.retried}",
        ]
        if self.as_json:
            print(json.dumps({"event": "sweep_done", "jobs": len(ids), "images": images, "failed": len(failed),
                              "cancelled": len(cancelled), "seconds": round(wall, 3), "nodes_ran": stats.ran,
                              "nodes_cached": stats.cached}), flush=True)  # fmt: skip
        else:
            if self.tty:
                print(file=sys.stderr)
            for job_id in ids:
                for artifact in store.artifacts(job_id):
                    print(artifact.path)
            for line in lines:
                print(line, file=sys.stderr)
        return EXIT_RUNTIME if failed else EXIT_CANCELLED if cancelled else EXIT_OK
