"""UI test fixtures: offscreen Qt, a torch-free registry, an isolated state folder, and mouse helpers
that drive the real canvas at scene coordinates."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_FONT_DPI", "96")

import pytest  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402

from app.graph import serialize  # noqa: E402
from app.registry import Registry  # noqa: E402
from app.ui import theme  # noqa: E402
from tests.graph.conftest import light_registry  # noqa: E402

SHAPES = "graphs/shapes.json"


@pytest.fixture(scope="session")
def registry() -> Registry:
    return light_registry()


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch, qapp):
    """Recent files and recovery files go to a temporary folder; the bundled font is loaded."""
    monkeypatch.setenv("NODELOOM_CACHE_DIR", str(tmp_path / "cache"))
    theme.load_fonts()
    from app.ui.window import MainWindow

    # A modal dialog would wait forever offscreen: tests answer them (per test where it matters).
    monkeypatch.setattr(MainWindow, "ask_save_changes", lambda self: "discard")
    monkeypatch.setattr(MainWindow, "ask_recover", lambda self, path: False)
    monkeypatch.setattr(MainWindow, "ask_outside_paths", lambda self, paths: False)
    monkeypatch.setattr(MainWindow, "warn", lambda self, text: self.statusBar().showMessage(text))
    from app.ui.editor import Editor

    monkeypatch.setattr(
        MainWindow, "ask_subgraph", lambda self, nodes: Editor.ask_subgraph(self.editor, nodes)
    )


@pytest.fixture
def window(qtbot, registry):
    from app.ui.window import MainWindow

    win = MainWindow(registry, serialize.load(SHAPES, registry))
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    win.view.resetTransform()
    win.view.centerOn(QPointF(300, 150))
    win.view.setFocus()
    return win


def vp(view, x: float, y: float) -> QPoint:
    """Viewport pixel of scene point (x, y)."""
    return view.mapFromScene(QPointF(x, y))


def port(view, node_id: str, name: str, output: bool) -> QPoint:
    item = view.graph_scene.nodes[node_id]
    return view.mapFromScene(item.port_pos(name, output))


def drag(
    qtbot,
    view,
    start: QPoint,
    end: QPoint,
    button=Qt.MouseButton.LeftButton,
    modifiers=Qt.KeyboardModifier.NoModifier,
    steps: int = 6,
) -> None:
    """Press at `start`, move in steps to `end`, release (viewport pixels)."""
    viewport = view.viewport()
    qtbot.mousePress(viewport, button, modifiers, start)
    for i in range(1, steps + 1):
        point = start + (end - start) * (i / steps)
        qtbot.mouseMove(viewport, point)
    qtbot.mouseRelease(viewport, button, modifiers, end)
