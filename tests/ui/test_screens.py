"""What the canvas looks like: golden screenshots (bundled font, fixed size) compared with a tolerance,
`nodeloom render-graph`, and a real window under Xvfb when it is installed (CI installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from app.ui.render import render_graph, save_png
from tests.ui.screens import GOLDEN, SIZE, difference, golden_graph, to_array

ROOT = Path(__file__).resolve().parents[2]
MEAN_LIMIT, OFF_LIMIT = 1.5, 0.005


def _check(image: QImage, name: str, out: Path) -> None:
    golden = GOLDEN / name
    if os.environ.get("NODELOOM_UPDATE_GOLDENS") == "1":
        save_png(image, golden)
    save_png(image, out / name)  # kept next to the test's temp files for a look when it fails
    mean, off = difference(image, golden)
    assert mean <= MEAN_LIMIT and off <= OFF_LIMIT, (
        f"{name}: mean diff {mean:.2f}, {off:.2%} pixels off; see {out / name}"
    )


def test_canvas_matches_the_golden_screenshot(qapp, registry, tmp_path):
    _check(render_graph(golden_graph(registry), registry, *SIZE), "canvas.png", tmp_path)


def test_zoomed_out_canvas_uses_the_cheap_level_of_detail(qapp, registry, tmp_path):
    _check(render_graph(golden_graph(registry), registry, 240, 150), "canvas_small.png", tmp_path)


def test_the_comparison_catches_a_visual_change(qapp, registry):
    graph = golden_graph(registry)
    graph.layout["positions"]["save"] = [320, 60]
    mean, off = difference(render_graph(graph, registry, *SIZE), GOLDEN / "canvas.png")
    assert mean > MEAN_LIMIT or off > OFF_LIMIT


def test_render_graph_command_writes_a_png(tmp_path):
    out = tmp_path / "graph.png"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "render-graph",
            "graphs/shapes.json",
            "-o",
            str(out),
            "--width",
            "640",
            "--height",
            "400",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert run.returncode == 0, run.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (640, 400)
    pixels = to_array(image).reshape(-1, 3)
    title = (0x3D, 0x6F, 0x9E)  # the "image" category colour of both title bars
    assert (abs(pixels.astype(int) - title).max(axis=1) < 4).sum() > 1000


def test_render_graph_names_a_broken_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    run = subprocess.run(
        [sys.executable, "-m", "app", "render-graph", str(bad), "-o", str(tmp_path / "x.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 3 and "bad.json" in run.stderr and "Traceback" not in run.stderr


WINDOW = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from app.ui.launch import application
    app = application()
    from PySide6.QtCore import QTimer
    from tests.graph.conftest import light_registry
    from tests.ui.screens import SIZE, golden_graph
    from app.ui.render import render_graph, save_png
    from app.ui.window import MainWindow
    registry = light_registry()
    window = MainWindow(registry, golden_graph(registry))
    window.resize(1200, 760)
    window.show()

    def shoot():
        window.view.frame_all()
        app.processEvents()
        save_png(app.primaryScreen().grabWindow(0), {screen!r})
        save_png(render_graph(golden_graph(registry), registry, *SIZE), {canvas!r})
        print(app.platformName(), window.isVisible(), window.windowTitle())
        window.close()
        app.quit()

    QTimer.singleShot(700, shoot)
    app.exec()
    """
)


@pytest.fixture
def xvfb_display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed here (.ci/run installs it as root)")
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    number = server.stdout.readline().strip()
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def test_a_real_window_under_xvfb(xvfb_display, tmp_path):
    screen, canvas = tmp_path / "screen.png", tmp_path / "canvas.png"
    env = {**os.environ, "DISPLAY": xvfb_display, "QT_QPA_PLATFORM": "xcb", "QT_FONT_DPI": "96"}
    env["NODELOOM_CACHE_DIR"] = str(tmp_path / "cache")
    code = WINDOW.format(root=str(ROOT), screen=str(screen), canvas=str(canvas))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:2] == ["xcb", "True"], run.stdout + run.stderr
    shot = to_array(QImage(str(screen)))
    assert shot.shape[:2] == (800, 1280)
    title = (0x3D, 0x6F, 0x9E)
    assert (abs(shot.reshape(-1, 3).astype(int) - title).max(axis=1) < 4).sum() > 500, (
        "the nodes are on screen"
    )
    mean, off = difference(QImage(str(canvas)), GOLDEN / "canvas.png")
    assert mean <= MEAN_LIMIT and off <= OFF_LIMIT, (
        f"under X the canvas differs: mean {mean:.2f}, {off:.2%} off"
    )
