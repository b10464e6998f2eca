"""Export to ComfyUI's API format, the round trip, the `import` / `export` commands, and ComfyUI's default
SD1.5 workflow run end to end on the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from app.graph import serialize
from app.interop import comfyui
from app.registry import default_registry
from tests.interop.test_comfyui import _flux, _import, _sd15

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "tests" / "interop" / "workflows" / "default_sd15.json"
REGISTRY = default_registry()


def _canonical(graph):
    nodes = {n.id: (n.type, n.params, n.mode) for n in graph}
    return nodes, sorted((e.src, e.src_port, e.dst, e.dst_port) for e in graph.edges)


def _links_resolve(prompt):
    for entry in prompt.values():
        for value in entry["inputs"].values():
            if isinstance(value, list):
                assert value[0] in prompt, f"a link to {value[0]}, which is not in the prompt"


@pytest.mark.parametrize("source", ["default", "sd15 ui", "sd3 api"])
def test_import_export_import_gives_the_same_graph(source):
    if source == "default":
        data = json.loads(DEFAULT.read_text())
    elif source == "sd15 ui":
        data = _sd15("ui", sampler="euler_ancestral", scheduler="exponential", skip=-3)
    else:
        data = _sd15("api")
        data["20"] = {"class_type": "ModelSamplingSD3", "inputs": {"shift": 3.0, "model": ["1", 0]}}
        data["6"]["inputs"]["model"] = ["20", 0]
    first, _ = _import(data)
    prompt, report = comfyui.export_api(first, REGISTRY)
    assert not report.skipped
    _links_resolve(prompt)
    second, _ = _import(prompt)
    assert _canonical(second) == _canonical(first)


def test_export_writes_one_ksampler_with_the_trio_values_and_placeholders_unchanged():
    api = _sd15("api")
    api["20"] = {
        "class_type": "PathchSageAttentionKJ",
        "inputs": {"model": ["1", 0], "sage_attention": "auto"},
    }
    api["6"]["inputs"]["model"] = ["20", 0]
    graph, _ = _import(api)
    prompt, report = comfyui.export_api(graph, REGISTRY)
    ks = prompt["6"]
    assert ks["class_type"] == "KSampler"
    assert {k: ks["inputs"][k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")} == {
        "seed": 42, "steps": 12, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0}  # fmt: skip
    assert ks["inputs"]["model"] == ["20", 0]
    assert prompt["20"] == {
        "class_type": "PathchSageAttentionKJ",
        "inputs": {"sage_attention": "auto", "model": ["1", 0]},
    }
    layers = [e for e in prompt.values() if e["class_type"] == "CLIPSetLastLayer"]
    assert layers and all(e["inputs"]["stop_at_clip_layer"] == -2 for e in layers)
    _links_resolve(prompt)


def test_flux_exports_guidance_as_flux_guidance_and_unexportable_nodes_are_named():
    graph, _ = _import(_flux("api"))
    prompt, report = comfyui.export_api(graph, REGISTRY)
    sampler = next(e for e in prompt.values() if e["class_type"] == "KSampler")
    assert sampler["inputs"]["cfg"] == 1.0
    guide = prompt[sampler["inputs"]["positive"][0]]
    assert guide["class_type"] == "FluxGuidance" and guide["inputs"]["guidance"] == 2.5
    assert prompt[sampler["inputs"]["negative"][0]]["class_type"] == "ConditioningZeroOut"
    _links_resolve(prompt)
    graph.nodes["samplercustomadvanced_12_guidance"].params["method"] = "apg"
    _, report = comfyui.export_api(graph, REGISTRY)
    assert any(line.startswith("samplercustomadvanced_12: guidance apg") for line in report.skipped)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "graphs").glob("*.json")))
def test_every_shipped_graph_exports_with_resolving_links(name):
    graph = serialize.load(ROOT / "graphs" / name, REGISTRY)
    prompt, report = comfyui.export_api(graph, REGISTRY)
    _links_resolve(prompt)
    assert report.exported == len(prompt) and all("class_type" in e for e in prompt.values())


def nodeloom(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=300
    )


def test_import_and_export_commands(tmp_path):
    graph_file = tmp_path / "default.json"
    done = nodeloom("import", str(DEFAULT), "-o", str(graph_file))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "mapped: " in out and "KSampler x1" in out and "CheckpointLoaderSimple x1" in out
    assert "model checkpoints/v1-5-pruned-emaonly.safetensors: NOT found in the model roots" in out
    assert serialize.load(graph_file, REGISTRY).nodes["ksampler_3"].type == "sampling.sampler"
    prompt_file = tmp_path / "prompt.json"
    done = nodeloom("export", "--comfyui-api", str(graph_file), "-o", str(prompt_file))
    assert done.returncode == 0, done.stderr
    assert json.loads(prompt_file.read_text())["3"]["class_type"] == "KSampler"
    (tmp_path / "broken.json").write_text('{"nodes": [{"id": 1}], "links": []}')
    done = nodeloom("import", str(tmp_path / "broken.json"), "-o", str(tmp_path / "x.json"))
    assert done.returncode == 3 and "broken.json" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()
    done = nodeloom("export", "--comfyui-api", str(graph_file), "-o", str(graph_file / "p.json"))
    assert done.returncode == 3 and "cannot write" in done.stderr and "Traceback" not in done.stderr


def test_default_sd15_workflow_runs_on_the_embedded_model(tmp_path):
    sets = ["checkpointloadersimple_4.checkpoint=tiny-shapes", "emptylatentimage_5.width=64",
            "emptylatentimage_5.height=64", "ksampler_3_schedule.steps=4"]  # fmt: skip
    args = [a for s in sets for a in ("--set", s)]
    done = nodeloom(
        "run", str(DEFAULT), *args, "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")
    )
    assert done.returncode == 0, done.stderr
    assert "a ComfyUI workflow, imported" in done.stderr
    pictures = list((tmp_path / "out").glob("ComfyUI_*.png"))
    assert len(pictures) == 1
    assert cv2.imread(str(pictures[0])).shape == (64, 64, 3)
