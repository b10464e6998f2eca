"""Screenshots of a live run in the editor (offscreen window, `grab()`), for the README:

    .venv/bin/python tools/live_run_screens.py [--out docs]

docs/live-run-1.png  txt2img opened: every node stale (amber badge: it will run)
docs/live-run-2.png  sampling: the Sampler's progress bar, its step preview in the Preview dock
docs/live-run-3.png  done: every node cached (green check), thumbnails under Decode and Save
docs/live-run-4.png  Live on, guidance scale changed: only Guidance and what follows it is stale
docs/live-run-5.png  the live re-run samples again from the cached prompts and model
docs/live-run-6.png  a link removed: the Errors panel lists the problem; the Sampler is in error, what follows blocked

Runs on the embedded model when assets/models/tiny-shapes exists, else on the tiny random model.
Dev tool, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_FONT_DPI", "96")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.graph import serialize  # noqa: E402
from app.graph.commands import Disconnect, SetParam  # noqa: E402
from app.graph.model import Edge  # noqa: E402
from app.registry import default_registry  # noqa: E402
from app.ui.launch import application  # noqa: E402


def wait(app, condition, limit: float = 600.0) -> None:
    start = time.monotonic()
    while not condition():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() - start > limit:
            raise SystemExit("timed out waiting for the editor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    app = application()
    from app.ui.window import MainWindow

    registry = default_registry()
    graph = serialize.load(ROOT / "graphs" / "txt2img.json", registry)
    if (ROOT / "assets" / "models" / "tiny-shapes").is_dir():
        graph.set_param("model", "checkpoint", "tiny-shapes")
    graph.set_param("schedule", "steps", 12)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["NODELOOM_CACHE_DIR"] = folder  # an empty result cache: the first run runs everything
        window = MainWindow(registry, graph, ROOT / "graphs" / "txt2img.json")
        window.runner.output_dir = Path(folder) / "out"
        window.resize(1500, 900)
        window.show()
        window.view.frame_all()
        shots = 0

        def shoot() -> None:
            nonlocal shots
            for _ in range(5):
                app.processEvents()
            shots += 1
            path = args.out / f"live-run-{shots}.png"
            window.grab().save(str(path))
            print(path)

        runner, editor = window.runner, window.editor
        sampler = editor.scene.nodes["sampler"]
        shoot()
        runner.run()
        wait(app, lambda: sampler.run.step >= 6 and "sampler" in runner.pictures)
        shoot()
        wait(app, lambda: not runner.running)
        editor.select_nodes(["decode"])
        shoot()
        window.actions_by_name["live"].trigger()
        editor.select_nodes(["guidance"])
        editor.push(SetParam("guidance", "scale", 4.0))
        runner.refresh()
        shoot()
        wait(app, lambda: sampler.run.step >= 6)
        shoot()
        wait(app, lambda: not runner.running)
        window.actions_by_name["live"].trigger()
        editor.push(Disconnect([Edge("latent", "latent", "sampler", "latent")]))
        runner.refresh()
        editor.select_nodes(["sampler"])
        shoot()
        runner.close()


if __name__ == "__main__":
    main()
