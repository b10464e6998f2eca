"""Entry point of the editor: `nodeloom edit [GRAPH]` and `nodeloom render-graph GRAPH -o PNG`.

Opening the editor never imports torch (a test checks it): nodes import it inside run functions,
and runs happen in the engine's worker. Imports Qt only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.graph import serialize
from app.interop import comfyui
from app.registry import Registry

EXIT_OK, EXIT_INVALID, EXIT_RUNTIME = 0, 3, 4


def application():
    """The QApplication (created once) with the bundled fonts registered."""
    from PySide6.QtWidgets import QApplication

    from app.ui import theme

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("Nodeloom")
        app.setOrganizationName("Nodeloom")
        theme.load_fonts()
    return app


def main(args: argparse.Namespace, registry: Registry) -> int:
    graph, report = None, None
    if getattr(args, "graph", None):
        try:
            graph, report = comfyui.load_graph(args.graph, registry)
        except serialize.GraphFileError as error:
            print(f"nodeloom: {error}", file=sys.stderr)
            return EXIT_INVALID
    if args.command == "render-graph":
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        application()
        from app.ui.render import render_graph, save_png

        image = render_graph(graph, registry, args.width, args.height)
        try:
            print(save_png(image, args.output))
        except OSError as error:
            print(f"nodeloom: cannot write {args.output} ({error.strerror or error})", file=sys.stderr)
            return EXIT_RUNTIME
        return EXIT_OK
    app = application()
    from app.ui.window import MainWindow

    path = Path(args.graph) if getattr(args, "graph", None) else None
    elsewhere = path is not None and (report is not None or path.suffix.lower() == ".png")
    window = MainWindow(registry, graph, None if elsewhere else path)
    if elsewhere:  # saved to a new file, never over the picture or the ComfyUI workflow
        window.source_note = (
            f"{path.name} ({'ComfyUI workflow' if report is not None else 'graph from image'})"
        )
        window.update_title()
    window.show()
    window.view.frame_readable()
    window.offer_recovery()
    return app.exec()
