"""The `nodeloom` command: run, validate, edit, render-graph; nodes, models and schema are in cli_catalog,
import/export in cli_interop, sweep in cli_sweep, serve/submit/status/cancel in cli_server.

Exit codes: 0 done; 2 usage error (bad flag, bad --set); 3 the graph file or graph is invalid;
4 a node failed while running; 130 cancelled. A user mistake never prints a traceback.
torch is never imported here: nodes import it inside their run functions when a run needs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from app import cli_catalog, cli_interop, cli_server, cli_sweep
from app.engine.context import CancelToken, RunSettings
from app.engine.events import EventKind, jsonable
from app.engine.executor import Executor
from app.engine.plan import validate
from app.engine.store import DEFAULT_DISK_BYTES, DEFAULT_MEMORY_BYTES, DiskStore, MemoryStore
from app.files import FileProblem, FileResolver, input_dirs
from app.fsutil import user_cache_dir
from app.graph import pngmeta, serialize, subgraphs
from app.graph.codes import ProblemCode
from app.graph.model import Edge, Graph, Node
from app.interop import comfyui
from app.jobs import sweep
from app.registry import Registry, RegistryError, default_registry

EXIT_OK, EXIT_USAGE, EXIT_INVALID, EXIT_RUNTIME, EXIT_CANCELLED = 0, 2, 3, 4, 130


class UsageError(Exception):
    """A command-line mistake (exit 2)."""


class InvalidGraph(Exception):
    """A graph that cannot be loaded or fails validation (exit 3)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodeloom", description="Node-graph diffusion: run, check and edit graphs."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a graph headless (a .json file or a PNG made by Save Image)")
    run.add_argument("graph", help="graph file (.json, or .png carrying a graph)")
    run.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override a param (repeatable); the value is parsed by the param's type",
    )
    run.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NODE",
        help="run this node (and what it needs) instead of the output nodes (repeatable)",
    )
    run.add_argument(
        "-o",
        "--output",
        default="output",
        metavar="OUTDIR",
        help="folder for written files (default: ./output)",
    )
    run.add_argument(
        "--json-events", action="store_true", help="print every event as one JSON object per line"
    )
    run.add_argument(
        "--device", default="auto", type=_device, help="auto | cpu | cuda | cuda:N | mps (default: auto)"
    )
    run.add_argument(
        "--cache-dir", help="on-disk result cache folder (default: $NODELOOM_CACHE_DIR or the user cache dir)"
    )
    run.add_argument("--no-disk-cache", action="store_true", help="keep results in memory only")
    run.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="let a graph read from a PNG read input files outside its folder and the working folder",
    )
    run.add_argument(
        "--allow-large",
        action="store_true",
        help="run even when the estimate says the device lacks the memory (refused by default)",
    )
    run.add_argument(
        "--lora",
        dest="loras",
        action="append",
        default=[],
        metavar="NAME[:MODEL[:CLIP]]",
        help="add a Load LoRA after the graph's checkpoint (repeatable, stacked in order); strengths "
        "default to 1, CLIP to the model strength",
    )

    check = commands.add_parser("validate", help="report every problem of a graph without running it")
    check.add_argument("graph")
    check.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE")
    check.add_argument("--json", action="store_true", help="print the problems as JSON")
    check.add_argument("--allow-outside-paths", action="store_true", help="as for run")

    cli_catalog.add_parsers(commands)
    cli_interop.add_parsers(commands)
    cli_sweep.add_parser(commands, _device)
    cli_server.add_parsers(commands, _device)
    edit = commands.add_parser("edit", help="open the editor")
    edit.add_argument("graph", nargs="?")

    render = commands.add_parser("render-graph", help="draw a graph's canvas to a PNG, headless")
    render.add_argument("graph")
    render.add_argument("-o", "--output", required=True, metavar="PNG")
    render.add_argument("--width", type=_pixels, default=1600)
    render.add_argument("--height", type=_pixels, default=1000)
    return parser


def _pixels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 16 <= value <= 16384:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in pixels from 16 to 16384")
    return value


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    return text


def load_graph(path: str, registry: Registry, sets: list[str]) -> Graph:
    """Load a graph file (a ComfyUI workflow is imported on the fly, its report on stderr) and apply --set
    overrides (raises InvalidGraph / UsageError)."""
    try:
        graph, report = comfyui.load_graph(path, registry)
    except serialize.GraphFileError as error:
        raise InvalidGraph(str(error)) from None
    if report is not None:
        for line in [f"{path}: a ComfyUI workflow, imported", *report.lines()]:
            print(line, file=sys.stderr)
    for item in sets:
        apply_set(graph, registry, item)
    return graph


def apply_set(graph: Graph, registry: Registry, item: str) -> None:
    """Apply one `NODE.PARAM=VALUE` override, parsing VALUE by the param's declared type."""
    target, sep, text = item.partition("=")
    if not sep:
        raise UsageError(f"--set {item!r}: expected NODE.PARAM=VALUE")
    try:
        node_id, name, value = sweep.typed_value(graph, registry, target, text)
    except sweep.SweepProblem as error:
        raise UsageError(f"--set {item!r}: {str(error).removeprefix(repr(target) + ': ')}") from None
    graph.set_param(node_id, name, value)


def _resolver(args: argparse.Namespace) -> FileResolver:
    """Input files beside the graph or in the working folder; a graph that came in a PNG (someone else's
    picture, maybe) may not read files elsewhere unless --allow-outside-paths says so."""
    path = Path(args.graph)
    try:
        from_png = path.open("rb").read(len(pngmeta.SIGNATURE)) == pngmeta.SIGNATURE
    except OSError:
        from_png = False
    confined = from_png and not args.allow_outside_paths
    return FileResolver(base_dirs=input_dirs(path.resolve().parent), confined=confined)


class _Printer:
    """Human output: a one-line progress bar on stderr and a summary."""

    def __init__(self, verbose_errors: bool = False) -> None:
        self.written: list[str] = []
        self.verbose_errors = verbose_errors

    def __call__(self, event: dict[str, Any]) -> None:
        kind, node = event["event"], event.get("node")
        if kind == EventKind.PROGRESS:
            done = int(20 * event["step"] / max(event["total"], 1))
            print(
                f"\r  {node}: [{'#' * done}{'.' * (20 - done)}] {event['step']:g}/{event['total']}",
                end="",
                file=sys.stderr,
                flush=True,
            )
        elif kind == EventKind.FINISHED:
            extra = "".join(
                f", {k} {v}" for k, v in event.items() if k not in ("event", "node", "duration", "key")
            )
            print(f"\r  ran {node} in {event['duration']:.2f}s{extra}" + " " * 20, file=sys.stderr)
        elif kind == EventKind.OUTPUT:
            self.written.append(event["path"])
        elif kind == EventKind.MODEL:
            took = f" in {event['seconds']:.2f}s" if "seconds" in event else ""
            print(f"\r  model {event['action']}: {event['path']}{took}", file=sys.stderr)
        elif kind == EventKind.ERROR:
            print(f"\r  error in node '{node}': {event['message']}", file=sys.stderr)
        elif kind in (EventKind.BLOCKED, EventKind.WARNING):
            print(
                f"\r  {kind} {node}: {event.get('message') or 'after ' + ', '.join(event['by'])}",
                file=sys.stderr,
            )


def _megabytes(variable: str, default: int) -> int:
    """A size setting in MB from the environment: a finite number >= 0 (0 turns that cache off)."""
    text = os.environ.get(variable)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"${variable}={text!r} is not a number of megabytes (a finite number >= 0)")
    return int(value * 2**20)


def insert_loras(graph: Graph, items: list[str]) -> None:
    """Chain a Load LoRA node per `NAME[:MODEL[:CLIP]]` between the graph's one Load Checkpoint and
    everything its MODEL and CLIP fed, in the order given (raises UsageError)."""
    if not items:
        return
    loaders = [n.id for n in graph if n.type == "model.checkpoint" and n.mode == "normal"]
    if len(loaders) != 1:
        raise UsageError(
            f"--lora needs a graph with exactly one Load Checkpoint (this one has {len(loaders)}); "
            "add Load LoRA nodes to the graph instead"
        )
    source = {"model": (loaders[0], "model"), "clip": (loaders[0], "clip")}
    users = [e for e in graph.edges if e.src == loaders[0] and e.src_port in source]
    for item in items:
        name, *numbers = item.split(":")
        try:
            strengths = [float(n) for n in numbers]
        except ValueError:
            raise UsageError(f"--lora {item!r}: strengths must be numbers, as in NAME:0.8:1.0") from None
        if not name or len(strengths) > 2:
            raise UsageError(f"--lora {item!r}: expected NAME, NAME:STRENGTH or NAME:MODEL:CLIP")
        model_strength = strengths[0] if strengths else 1.0
        params = {"lora_name": name, "strength_model": model_strength}
        params["strength_clip"] = strengths[1] if len(strengths) > 1 else model_strength
        node = graph.add_node(Node(graph.new_id("lora"), "model.lora", params=params))
        for port, (src, src_port) in source.items():
            graph.connect(Edge(src, src_port, node.id, port))
            source[port] = (node.id, port)
    for edge in users:
        graph.disconnect(edge)
        src, src_port = source[edge.src_port]
        graph.connect(Edge(src, src_port, edge.dst, edge.dst_port))


def results_dir(cache_dir: str | None) -> Path:
    """The on-disk result cache: --cache-dir, else $NODELOOM_CACHE_DIR or the user cache folder."""
    return Path(cache_dir).expanduser() if cache_dir else user_cache_dir() / "results"


def cmd_run(args: argparse.Namespace, registry: Registry) -> int:
    graph = load_graph(args.graph, registry, args.sets)
    insert_loras(graph, args.loras)
    disk = None
    if not args.no_disk_cache:
        disk = DiskStore(
            results_dir(args.cache_dir), _megabytes("NODELOOM_DISK_CACHE_MB", DEFAULT_DISK_BYTES)
        )
    memory = MemoryStore(_megabytes("NODELOOM_MEMORY_CACHE_MB", DEFAULT_MEMORY_BYTES))
    settings = RunSettings(
        device=args.device,
        output_dir=Path(args.output),
        graph_json=serialize.dumps(graph),
        resolver=_resolver(args),
        allow_large=args.allow_large,
    )
    printer = _Printer()
    running: list[str] = []  # the node a Ctrl-C or SIGTERM interrupts

    def emit(event: dict[str, Any]) -> None:
        if event["event"] == EventKind.STARTED:
            running[:] = [event["node"]]
        if args.json_events:
            print(json.dumps(jsonable(event)), flush=True)
        else:
            printer(event)

    token = CancelToken()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a terminated run ends like a cancelled one
    from app.runtime.device import capacity  # pure at import; asks torch only for a large run

    try:
        result = Executor(registry, memory=memory, disk=disk, capacity=capacity).run(
            graph, args.target or None, settings, emit, token
        )
    except KeyboardInterrupt:
        if args.json_events:
            print(
                json.dumps({"event": EventKind.CANCELLED, "node": running[0] if running else None}),
                flush=True,
            )
        print("\ncancelled", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.status == "invalid":
        raise InvalidGraph(_problems_text(args.graph, result.problems))
    if not args.json_events:
        if result.cached:
            print(f"from cache: {', '.join(_cached_names(graph, result.cached))}", file=sys.stderr)
        for path in printer.written:
            print(path)
    if result.status == "error":
        return EXIT_RUNTIME
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_OK


def _cached_names(graph: Graph, cached: list[str]) -> list[str]:
    """The nodes served from the cache as the user's graph names them: a subgraph's inner nodes (run as
    `<instance>__<inner>`) are counted on their instance."""
    inside: dict[str, int] = {}
    for node_id in cached:
        owner = node_id if node_id in graph.nodes else node_id.split(subgraphs.SEPARATOR, 1)[0]
        inside[owner] = inside.get(owner, 0) + (owner != node_id)
    return [f"{name} ({count} inside)" if count else name for name, count in inside.items()]


def _interrupt(_signal: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _problems_text(path: str, problems) -> str:
    lines = [f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"]
    lines += [f"  - {p}" + (" (--target NODE)" if p.code == ProblemCode.NO_OUTPUT else "") for p in problems]
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace, registry: Registry) -> int:
    from app.engine import resources
    from app.runtime.device import capacity

    graph = load_graph(args.graph, registry, args.sets)
    problems = validate(graph, registry, _resolver(args))
    warning = None
    if not problems:  # what it would need with nothing cached, against this machine's default device
        too_large, warning = resources.check(
            resources.estimate_graph(graph, registry, _resolver(args)), "auto", capacity
        )
        problems = too_large
    if warning and not args.json:
        print(f"{args.graph}: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"valid": not problems, "problems": [p.to_json() for p in problems]}, indent=2))
    elif problems:
        print(_problems_text(args.graph, problems), file=sys.stderr)
    else:
        print(f"{args.graph}: valid ({len(graph.nodes)} nodes, {len(graph.edges)} links)")
    return EXIT_INVALID if problems else EXIT_OK


def cmd_ui(args: argparse.Namespace, registry: Registry) -> int:
    try:
        from app.ui import launch
    except ImportError as error:
        raise UsageError(f"the editor is not available in this install ({error})") from None
    return launch.main(args, registry)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # `nodeloom nodes --json | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    try:
        registry = default_registry()
        handler = {
            "run": cmd_run,
            "validate": cmd_validate,
            "nodes": cli_catalog.cmd_nodes,
            "models": cli_catalog.cmd_models,
            "schema": cli_catalog.cmd_schema,
            "edit": cmd_ui,
            "render-graph": cmd_ui,
            "import": cli_interop.cmd_import,
            "export": cli_interop.cmd_export,
            "sweep": cli_sweep.cmd_sweep,
            "serve": cli_server.cmd_serve,
            "submit": cli_server.cmd_submit,
            "status": cli_server.cmd_status,
            "cancel": cli_server.cmd_cancel,
        }.get(args.command)
        return handler(args, registry)
    except UsageError as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (InvalidGraph, FileProblem) as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return EXIT_INVALID
    except RegistryError as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return EXIT_RUNTIME
