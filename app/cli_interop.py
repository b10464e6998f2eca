"""`nodeloom import` (a ComfyUI workflow -> a Nodeloom graph file, with a report) and `nodeloom export
--comfyui-api` (a graph -> ComfyUI's API format). `nodeloom run`, `validate` and the editor open ComfyUI files
directly through `app.interop.comfyui.load_graph`. Never import torch or Qt here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.files import FileProblem, FileResolver
from app.fsutil import atomic_write_text
from app.graph import serialize
from app.interop import comfyui
from app.registry import Registry

EXIT_OK, EXIT_INVALID = 0, 3


def add_parsers(commands: Any) -> None:
    imported = commands.add_parser(
        "import",
        help="turn a ComfyUI workflow (.json in the UI or API format, or a ComfyUI PNG) into a graph",
    )
    imported.add_argument("workflow")
    imported.add_argument("-o", "--output", required=True, help="the graph file to write (.json)")
    exported = commands.add_parser("export", help="write a graph in another tool's format")
    exported.add_argument("graph")
    exported.add_argument(
        "--comfyui-api",
        action="store_true",
        required=True,
        help="ComfyUI's API format (what its /prompt runs)",
    )
    exported.add_argument("-o", "--output", required=True, help="the file to write (.json)")


def report_lines(report: comfyui.Report, resolver: FileResolver | None = None) -> list[str]:
    """The import report, with whether each model the graph loads is in the model roots."""
    resolver = resolver or FileResolver()
    lines = report.lines()
    for kind, name in report.models:
        try:
            resolver.resolve(f"model:{kind}", name)
            where = "found"
        except FileProblem:
            where = f"NOT found in the model roots ({kind})"
        lines.append(f"model {kind}/{name}: {where}")
    return lines


def _load(path: str, registry: Registry) -> tuple[Any, comfyui.Report | None] | None:
    try:
        return comfyui.load_graph(path, registry)
    except serialize.GraphFileError as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return None


def _written(write: Any, output: str) -> bool:
    """Runs `write`; a file that cannot be written is said, not raised."""
    try:
        write()
    except OSError as error:
        print(f"nodeloom: cannot write {output} ({error.strerror or error})", file=sys.stderr)
        return False
    return True


def cmd_import(args: argparse.Namespace, registry: Registry) -> int:
    loaded = _load(args.workflow, registry)
    if loaded is None:
        return EXIT_INVALID
    graph, report = loaded
    if report is None:
        print(f"nodeloom: {args.workflow}: already a Nodeloom graph, not a ComfyUI workflow", file=sys.stderr)
        return EXIT_INVALID
    if not _written(lambda: serialize.save(graph, args.output), args.output):
        return EXIT_INVALID
    for line in report_lines(report):
        print(line)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, registry: Registry) -> int:
    loaded = _load(args.graph, registry)
    if loaded is None:
        return EXIT_INVALID
    prompt, report = comfyui.export_api(loaded[0], registry)
    text = json.dumps(prompt, indent=2) + "\n"
    if not _written(lambda: atomic_write_text(Path(args.output), text), args.output):
        return EXIT_INVALID
    print(f"exported {report.exported} ComfyUI nodes to {args.output}")
    for line in report.notes:
        print(f"note: {line}")
    for line in report.skipped:
        print(f"not exported: {line}")
    return EXIT_OK
