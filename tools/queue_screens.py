"""Screenshots of the Run queue and the History dock (a real window: run under Xvfb, `xvfb-run`), for the
README:

    xvfb-run -a .venv/bin/python tools/queue_screens.py [--out docs]

docs/queue-1.png  Run x4 with the seed on "increment": four queued runs, one running, the others pending
docs/queue-2.png  the four done; History holds their pictures, two selected
docs/queue-3.png  Compare: the two selected pictures side by side

Runs graphs/txt2img.json on the embedded model. Dev tool, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_FONT_DPI", "96")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.graph import serialize  # noqa: E402
from app.graph.layout_commands import SetLayout  # noqa: E402
from app.jobs import seeds  # noqa: E402
from app.registry import default_registry  # noqa: E402
from app.ui.launch import application  # noqa: E402
from tools.live_run_screens import wait  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    app = application()
    from app.ui.window import MainWindow

    registry = default_registry()
    graph = serialize.load(ROOT / "graphs" / "txt2img.json", registry)
    graph.set_param("schedule", "steps", 20)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["NODELOOM_CACHE_DIR"] = folder
        window = MainWindow(registry, graph, ROOT / "graphs" / "txt2img.json")
        window.runner.output_dir = Path(folder) / "out"
        window.resize(1500, 900)
        window.show()
        window.view.frame_all()
        window.run_controls.queue_dock.raise_()
        window.editor.push(SetLayout("Seed control", seeds.LAYOUT_KEY, "sampler.seed", "increment"))
        window.run_controls.run_count.setValue(4)
        window.actions_by_name["run"].trigger()
        wait(app, lambda: window.queue.current is not None and window.runner.progress)
        window.grab().save(str(args.out / "queue-1.png"))
        wait(app, lambda: not window.queue.store.jobs(("pending", "running")))
        window.run_controls.history_dock.raise_()
        history = window.run_controls.history
        history.refresh()
        for row in (0, 1):
            history.list.item(row).setSelected(True)
        history.list.itemClicked.emit(history.list.item(0))  # shown in the Preview dock
        app.processEvents()
        window.grab().save(str(args.out / "queue-2.png"))
        dialog = history.compare()
        dialog.resize(700, 420)
        wait(app, lambda: dialog.isVisible())
        app.processEvents()
        dialog.grab().save(str(args.out / "queue-3.png"))
        window.runner.close()
        window.queue.close()
    print("wrote", *(args.out / f"queue-{i}.png" for i in (1, 2, 3)))


if __name__ == "__main__":
    main()
