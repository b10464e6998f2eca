"""The diffusion graph as a user meets it: saved PNGs carry the graph and a manifest and re-run, cancel stops
within a step, progress and previews arrive, and a guidance change re-runs only what depends on it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from app.engine.context import CancelToken, RunSettings
from app.graph import pngmeta, serialize
from app.images import read
from app.registry import default_registry
from tests.nodes import diffusion_helpers as h


def started(events: list[dict]) -> set[str]:
    return {e["node"] for e in events if e["event"] == "started"}


def test_saved_png_reopens_as_the_same_graph_and_reruns_from_the_cli(model_path, tmp_path):
    g = h.graph(schedule__steps=3, sampler__seed=7)
    events: list[dict] = []
    h.run(h.executor(), g, target="save", events=events, output_dir=tmp_path / "first")
    written = [e["path"] for e in events if e["event"] == "output"]
    assert len(written) == 1
    reopened = serialize.load(written[0], default_registry())
    assert serialize.dumps(reopened) == serialize.dumps(g)
    manifest = json.loads(pngmeta.read_text(open(written[0], "rb").read())["nodeloom_manifest"])
    assert manifest["seeds"] == {"sampler.seed": 7}
    assert manifest["models"]["model"]["path"] == str(model_path)
    assert len(manifest["models"]["model"]["sha256"]) == 64
    assert manifest["device"] == "cpu" and manifest["dtype"] == "fp32"
    assert set(manifest["versions"]) == {"torch", "diffusers", "transformers"}
    out = tmp_path / "again"
    run = subprocess.run(
        [sys.executable, "-m", "app", "run", written[0], "-o", str(out), "--no-disk-cache"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=h.ROOT,
    )
    assert run.returncode == 0, run.stderr
    again = run.stdout.strip().splitlines()[-1]
    assert again.startswith(str(out)) and again.endswith(".png")
    assert np.array_equal(read(again)[0], read(written[0])[0])


def test_cancel_stops_within_one_step(model_path):
    token = CancelToken()
    events: list[dict] = []

    def listen(event: dict) -> None:
        events.append(event)
        if event["event"] == "progress" and event["node"] == "sampler" and event["step"] == 2:
            token.cancel()

    g = h.graph(schedule__steps=10)
    result = h.executor().run(g, ["sampler"], RunSettings(device="cpu"), on_event=listen, token=token)
    steps = [e["step"] for e in events if e["event"] == "progress" and e["node"] == "sampler"]
    assert result.status == "cancelled"
    assert steps == [1, 2]
    assert {"event": "cancelled", "node": "sampler"} in events


def test_progress_every_step_and_previews_every_few(model_path):
    events: list[dict] = []
    h.run(h.executor(), h.graph(schedule__steps=10), events=events)
    progress = [e["step"] for e in events if e["event"] == "progress" and e["node"] == "sampler"]
    previews = [e for e in events if e["event"] == "preview" and e["node"] == "sampler"]
    assert progress == list(range(1, 11))
    assert [p["step"] for p in previews] == [2, 4, 6, 8, 10]
    image = previews[-1]["image"]
    assert image.dtype == np.uint8 and image.shape == (h.SIZE // 2, h.SIZE // 2, 3)


def test_changing_guidance_scale_reruns_only_guidance_sampler_decode_save(model_path, tmp_path):
    executor = h.executor()
    g = h.graph(schedule__steps=3)
    first: list[dict] = []
    h.run(executor, g, target="save", events=first, output_dir=tmp_path)
    assert {"model", "prompt", "negative", "sampler", "decode", "save"} <= started(first)
    g.set_param("guidance", "scale", 3.0)
    second: list[dict] = []
    h.run(executor, g, target="save", events=second, output_dir=tmp_path)
    assert started(second) == {"guidance", "sampler", "decode", "save"}
    cached = {e["node"] for e in second if e["event"] == "cached"}
    assert {"prompt", "negative", "latent", "schedule"} <= cached


@pytest.mark.parametrize(
    "name", ["txt2img", "img2img", "guidance_pag", "guidance_apg", "guidance_cfg_zero_star", "guidance_rcfg"]
)
def test_every_shipped_diffusion_graph_runs_on_the_shipped_model(name, tmp_path):
    g = serialize.load(h.ROOT / "graphs" / f"{name}.json", default_registry())
    assert g.nodes["model"].params["checkpoint"] == "tiny-shapes"
    assert set(g.layout["positions"]) == set(g.nodes)
    g.set_param("schedule", "steps", 2)
    events: list[dict] = []
    h.run(h.executor(), g, target="save", events=events, output_dir=tmp_path)
    assert [e for e in events if e["event"] == "output"]


def test_conditioning_latents_and_schedules_come_back_from_the_disk_cache(model_path, tmp_path):
    from app.engine.executor import Executor
    from app.engine.store import DiskStore

    g = h.graph(schedule__steps=2)
    first = Executor(default_registry(), disk=DiskStore(tmp_path / "cache")).run(
        g, ["decode"], RunSettings(device="cpu")
    )
    events: list[dict] = []
    again = Executor(default_registry(), disk=DiskStore(tmp_path / "cache"))
    second = again.run(g, ["decode"], RunSettings(device="cpu"), on_event=events.append)
    from_disk = {e["node"] for e in events if e["event"] == "cached" and e["source"] == "disk"}
    assert from_disk == {"decode"}  # everything upstream of a disk hit is not even looked at
    assert np.array_equal(first.outputs["decode"]["image"], second.outputs["decode"]["image"])
    events.clear()
    g.set_param("decode", "tiled", True)  # decode must run: its inputs come from disk
    third = again.run(g, ["decode"], RunSettings(device="cpu"), on_event=events.append)
    from_disk = {e["node"] for e in events if e["event"] == "cached" and e["source"] == "disk"}
    assert "sampler" in from_disk and "model" not in from_disk  # models never go to disk
    assert started(events) == {"model", "decode"}
    assert np.array_equal(first.outputs["decode"]["image"], third.outputs["decode"]["image"])
