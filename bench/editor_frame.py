"""Editor frame time and cold start, offscreen: how long one full repaint of the canvas takes for 100, 500
and 1000 nodes at 1:1 and fit-all zoom, and how long `nodeloom edit graphs/txt2img.json` takes to show
its window in a fresh process (targets: 1000 nodes fit-all <= 16 ms per frame; cold start <= 2 s).

    .venv/bin/python bench/editor_frame.py [--frames 15] [--sizes 100 500 1000]

Synthetic graphs use the torch-free nodes (Draw Shape, Math, Save Image, Float) in a grid, each node
linked to its left neighbour, so about one link per node. Prints medians; never a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from app.graph.model import Edge, Graph, Node  # noqa: E402
from app.registry import Registry  # noqa: E402
from app.ui.launch import application  # noqa: E402

VIEW = (1600, 1000)
CYCLE = ("shapes.draw", "math.binary", "math.binary", "value.float")


def light_registry() -> Registry:
    import nodes.image_io
    import nodes.numbers
    import nodes.shapes
    import nodes.values

    registry = Registry()
    for module in (nodes.values, nodes.numbers, nodes.image_io, nodes.shapes):
        registry.add_module(module)
    return registry


def grid_graph(count: int, registry: Registry) -> Graph:
    graph = Graph()
    columns = max(1, int(count**0.5 * 1.6))
    positions = {}
    for index in range(count):
        kind = CYCLE[index % len(CYCLE)]
        node_id = f"n{index}"
        graph.add_node(Node(node_id, kind, params=registry(kind).defaults()))
        positions[node_id] = [(index % columns) * 280.0, (index // columns) * 300.0]
        if index % columns:
            previous = graph.nodes[f"n{index - 1}"]
            source = registry(previous.type).outputs[0]
            target = "a" if kind == "math.binary" else None
            if target and source.type in ("FLOAT", "INT"):
                graph.edges.append(Edge(previous.id, source.name, node_id, target))
    graph.layout["positions"] = positions
    return graph


def frame_ms(view, frames: int) -> float:
    """Median wall time of one full repaint of the viewport into an image."""
    viewport = view.viewport()
    viewport.grab()  # warm caches
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        viewport.grab()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def paint_times(sizes: list[int], frames: int) -> None:
    from app.ui.editor import Editor

    application()
    registry = light_registry()
    print(f"paint time per frame, {VIEW[0]}x{VIEW[1]} viewport, offscreen raster, median of {frames}")
    print(f"{'nodes':>6} {'links':>6} {'1:1 ms':>8} {'fit-all ms':>11} {'fit zoom':>9} {'build ms':>9}")
    for count in sizes:
        graph = grid_graph(count, registry)
        start = time.perf_counter()
        editor = Editor(registry, graph)
        build = (time.perf_counter() - start) * 1000
        view = editor.view
        view.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
        view.resize(*VIEW)
        view.show()
        view.resetTransform()
        view.centerOn(QPointF(VIEW[0] / 2, VIEW[1] / 2))
        one = frame_ms(view, frames)
        view.frame_all()
        fit = frame_ms(view, frames)
        print(f"{count:>6} {len(graph.edges):>6} {one:>8.1f} {fit:>11.1f} {view.zoom():>9.3f} {build:>9.0f}")
        view.hide()
        editor.scene.detach()


COLD = """
import os, sys, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, {root!r})
from PySide6.QtCore import QTimer
from app.ui.launch import application
app = application()

def shown():
    from PySide6.QtWidgets import QApplication
    if any(w.isVisible() and w.windowTitle() for w in QApplication.topLevelWidgets()):
        print("shown", flush=True)
        app.quit()
    else:
        QTimer.singleShot(5, shown)

QTimer.singleShot(0, shown)
from app.cli import main
main(["edit", {graph!r}])
"""


def cold_start(graph: str, runs: int) -> None:
    times = []
    for _ in range(runs):
        env = {**os.environ, "NODELOOM_CACHE_DIR": "/tmp/nodeloom-bench-cache"}
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD.format(root=str(ROOT), graph=graph)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if "shown" not in out.stdout:
            raise SystemExit(f"the editor did not show: {out.stderr[-2000:]}")
        times.append(time.perf_counter() - start)
    print(
        f"cold start to a shown window ({graph}, new process, median of {runs}): {statistics.median(times):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--graph", default="graphs/txt2img.json")
    args = parser.parse_args()
    paint_times(args.sizes, args.frames)
    cold_start(args.graph, args.cold_runs)


if __name__ == "__main__":
    main()
