"""The editor running the shipped txt2img graph on the tiny model in the worker: Cancel during sampling
stops within one step and keeps every upstream node cached; the status bar shows the worker's device and
its model loads; the Sampler streams step previews to the Preview dock."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.graph import serialize
from app.graph.commands import SetParam
from app.registry import default_registry

RUN_LIMIT_MS = 240_000
UPSTREAM = ("model", "prompt", "negative", "schedule", "guidance", "latent")


def test_cancel_during_sampling_stops_within_one_step_and_keeps_upstream_cached(qtbot, tmp_path):
    from app.ui.window import MainWindow

    registry = default_registry()
    win = MainWindow(registry, serialize.load("graphs/txt2img.json", registry))
    win.runner.output_dir = tmp_path / "out"
    qtbot.addWidget(win)
    with qtbot.waitActive(win):
        win.show()
        win.activateWindow()
    win.view.setFocus()
    messages: list[str] = []
    win.runner.message.connect(messages.append)
    captions: list[str] = []
    win.runner.picture.connect(lambda node, picture, caption: captions.append(caption))
    win.editor.push(SetParam("schedule", "steps", 8))
    try:
        win.actions_by_name["run"].trigger()
        sampler = win.editor.scene.nodes["sampler"]
        qtbot.waitUntil(lambda: sampler.run.step >= 1, timeout=RUN_LIMIT_MS)
        assert sampler.run.state == "running" and sampler.run.total == 8
        seen = sampler.run.step
        with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS) as done:
            qtbot.keyClick(win.view, Qt.Key.Key_Escape)
        assert done.args[0]["status"] == "cancelled"
        steps = [e["step"] for e in win.runner.log if e["event"] == "progress" and e["node"] == "sampler"]
        assert max(steps) <= seen + 1
        states = {n: item.run.state for n, item in win.editor.scene.nodes.items()}
        assert {n: states[n] for n in UPSTREAM} == dict.fromkeys(UPSTREAM, "cached")
        assert {states[n] for n in ("sampler", "decode", "save")} == {"stale"}
        assert any(m.startswith("model load: tiny-shapes") for m in messages)
        assert win.run_controls.device_label.text() in (
            "device: CPU",
        ) or win.run_controls.device_label.text().startswith("device: CUDA")
        assert "memory" in win.run_controls.memory_label.text()

        win.editor.push(SetParam("schedule", "steps", 2))  # runs again from the cached nodes, to the end
        with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS) as done:
            win.actions_by_name["run"].trigger()
        assert done.args[0]["status"] == "ok"
        run_id = win.runner.submitted[-1][0]
        started = [e["node"] for e in win.runner.log if e["event"] == "started" and e.get("run") == run_id]
        assert started == ["schedule", "sampler", "decode", "save"]
        assert any(c.startswith("Sampler — step 2/2") for c in captions)
        assert win.run_controls.preview.image is not None and win.run_controls.preview.image.width() == 64
        assert win.editor.scene.nodes["decode"].thumb is not None
    finally:
        win.runner.close()


def test_the_flux_split_file_graph_with_a_lora_and_a_cache_runs_in_the_editor(qtbot, tmp_path):
    """graphs/flux_split.json (Load Diffusion Model, Dual CLIP, Load VAE, Load LoRA, Step Cache) opened and
    run in the editor's worker: every node finishes, the LoRA and the cache reach the Sampler."""
    from app.ui.window import MainWindow

    registry = default_registry()
    win = MainWindow(registry, serialize.load("graphs/flux_split.json", registry))
    win.runner.output_dir = tmp_path / "out"
    qtbot.addWidget(win)
    win.editor.push(SetParam("schedule", "steps", 2))
    try:
        with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS) as done:
            win.actions_by_name["run"].trigger()
        assert done.args[0]["status"] == "ok", win.runner.log[-3:]
        finished = {e["node"]: e for e in win.runner.log if e["event"] == "finished"}
        assert {"model", "clip", "vae", "lora", "cache", "sampler", "save"} <= set(finished)
        assert finished["sampler"].get("lora_layers", 0) > 0 and finished["sampler"]["cache_total_blocks"] > 0
        assert {item.run.state for item in win.editor.scene.nodes.values()} == {"cached"}
    finally:
        win.runner.close()


def test_a_ksampler_subgraph_runs_in_the_editor_with_its_progress_badge_and_picture(qtbot, tmp_path):
    from app.ui.window import MainWindow

    registry = default_registry()
    win = MainWindow(registry, serialize.load("graphs/ksampler.json", registry))
    win.runner.output_dir = tmp_path / "out"
    qtbot.addWidget(win)
    win.show()
    win.editor.push(SetParam("ksampler", "steps", 3))
    try:
        with qtbot.waitSignal(win.runner.finished, timeout=RUN_LIMIT_MS) as done:
            win.actions_by_name["run"].trigger()
        assert done.args[0]["status"] == "ok"
        progress = [e for e in win.runner.log if e["event"] == "progress" and e["node"] == "ksampler"]
        assert [e["step"] for e in progress][-1] == 3  # the inner Sampler's steps, shown on the subgraph node
        states = {n: item.run.state for n, item in win.editor.scene.nodes.items()}
        assert states["ksampler"] == "cached" and states["decode"] == "cached"
        assert "ksampler" in win.runner.pictures  # its picture is the inner Sampler's
        win.editor.push(SetParam("ksampler", "cfg", 5.0))  # an exposed param makes the node stale again
        states = win.runner.tracker.states(win.editor.graph)
        assert states["ksampler"].state == "stale" and states["decode"].state == "stale"
        assert states["model"].state == "cached"
    finally:
        win.runner.close()
