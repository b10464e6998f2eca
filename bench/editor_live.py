"""Live editing latency, offscreen, through the editor's Runner and the real worker process: how long from a
guidance-scale change to the Sampler's first step preview, and from a decode-only change to the final
image, each beside a full run of the same graph measured in the same session.

    .venv/bin/python bench/editor_live.py [--steps 10] [--size 64]

Uses graphs/txt2img.json on the embedded model assets/models/tiny-shapes when it is there, else on the
tiny random SD1.5 model (the output says which). Live mode is on for the edits, so their times include the
~300 ms debounce. "Full run, cold" starts the worker process (torch import, model load) with an empty
cache; "full run, warm" changes the prompts and seed, so every node but the model handle runs again.
Then the Run queue: a 10-seed queue (one Run x10, seeds incrementing) beside pressing Run 10 times with a
new seed each time, both as runs per second from the first press to the last picture (before the queue,
the 10 presses made one picture). Prints seconds; never a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.graph import serialize  # noqa: E402
from app.graph.commands import SetParam  # noqa: E402
from app.registry import default_registry  # noqa: E402
from app.ui.launch import application  # noqa: E402

LIMIT_S = 900.0


class Clock:
    """Marks when the runner reports the first sampler preview, the decoded image and the run's end."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.start = 0.0
        self.marks: dict[str, float] = {}
        runner.picture.connect(self._picture)
        runner.finished.connect(lambda event: self._mark("done"))

    def _mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter() - self.start)

    def _picture(self, node: str, picture, caption: str) -> None:
        if node == "sampler":
            self._mark("first_preview")
        elif node == "decode":
            self._mark("image")

    def measure(self, app, change) -> dict[str, float]:
        self.marks = {}
        self.start = time.perf_counter()
        change()
        while "done" not in self.marks:
            app.processEvents()
            time.sleep(0.002)
            if time.perf_counter() - self.start > LIMIT_S:
                raise SystemExit("a run took longer than the bench allows")
        status = self.runner.last_done.get("status")
        if status != "ok":
            raise SystemExit(f"run ended {status}: {self.runner.last_done}")
        return self.marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    app = application()
    from app.ui.editor import Editor
    from app.ui.runner import Runner

    registry = default_registry()
    graph = serialize.load(ROOT / "graphs" / "txt2img.json", registry)
    embedded = (ROOT / "assets" / "models" / "tiny-shapes").is_dir()
    model = (
        "tiny-shapes (embedded)" if embedded else "tiny-random-sd15 (tiny random; tiny-shapes is not there)"
    )
    if embedded:
        graph.set_param("model", "checkpoint", "tiny-shapes")
    graph.set_param("schedule", "steps", args.steps)
    graph.set_param("latent", "width", args.size)
    graph.set_param("latent", "height", args.size)
    editor = Editor(registry, graph)
    with tempfile.TemporaryDirectory() as folder:
        runner = Runner(editor, cache_dir=Path(folder) / "cache", output_dir=Path(folder) / "out")
        clock = Clock(runner)
        try:
            cold = clock.measure(app, runner.run)
            warm = clock.measure(
                app,
                lambda: [
                    editor.push(SetParam("prompt", "text", "a green square on a white background")),
                    editor.push(SetParam("negative", "text", "blurry")),
                    editor.push(SetParam("sampler", "seed", 7)),
                    runner.run(),
                ],
            )
            runner.set_live(True)
            guidance = clock.measure(app, lambda: editor.push(SetParam("guidance", "scale", 5.0)))
            decode = clock.measure(app, lambda: editor.push(SetParam("decode", "tiled", True)))
            runner.set_live(False)
            queued = queue_throughput(app, editor, runner, Path(folder))
        finally:
            runner.close()
    device = runner.device_info.get("device", "?")
    print(f"model: {model}; {args.steps} steps, {args.size}x{args.size}; device: {device}")
    print(f"{'':40s} {'first step preview':>20s} {'final image':>12s} {'run done':>10s}")
    rows = (
        ("full run, cold (worker start, load)", cold),
        ("full run, warm worker", warm),
        ("guidance scale change (Live)", guidance),
        ("decode-only change (Live)", decode),
    )
    for label, marks in rows:
        cells = [marks.get(k) for k in ("first_preview", "image", "done")]
        text = [f"{v:.2f}s" if v is not None else "-" for v in cells]
        print(f"{label:40s} {text[0]:>20s} {text[1]:>12s} {text[2]:>10s}")
    print(
        f"guidance change -> first preview: {guidance['first_preview']:.2f}s vs full warm run "
        f"{warm['done']:.2f}s ({guidance['first_preview'] / warm['done']:.0%})"
    )
    print(
        f"decode-only change -> final image: {decode['image']:.2f}s vs full warm run "
        f"{warm['done']:.2f}s ({decode['image'] / warm['done']:.0%})"
    )
    for label, rate in queued.items():
        print(f"{label:40s} {rate:.2f} runs/s (10 pictures)")


def queue_throughput(app, editor, runner, folder: Path) -> dict[str, float]:
    """Runs per second of one Run x10 and of 10 Run presses (new seed each), through the RunQueue."""
    from app.jobs import JobStore, seeds
    from app.ui.run_queue import RunQueue

    queue = RunQueue(editor, runner, JobStore(folder / "jobs.sqlite"))
    editor.graph.layout[seeds.LAYOUT_KEY] = {"sampler.seed": "increment"}
    rates = {}
    for label, press in (
        ("Run x10 (10-seed queue)", lambda: queue.enqueue(10)),
        ("Run pressed 10 times", lambda: [queue.enqueue(1) for _ in range(10)]),
    ):
        start = time.perf_counter()
        press()
        while queue.store.jobs(("pending", "running")):
            app.processEvents()
            time.sleep(0.002)
            if time.perf_counter() - start > LIMIT_S:
                raise SystemExit("the queue took longer than the bench allows")
        done = [j for j in queue.store.jobs(("done",))]
        rates[label] = 10 / (time.perf_counter() - start)
        assert len(done) >= 10, "every queued run must have finished"
        queue.store.clear()
    queue.close()
    return rates


if __name__ == "__main__":
    main()
