"""The run estimate (app/engine/resources.py): a run that needs more memory than the device has free is
refused before anything loads, with a sentence naming the node and the way out; allowed when the user says
so; cached work costs nothing; long runs are warned about. The arithmetic is checked on a header-only
checkpoint of SD1.5's real sizes against published figures, and through the CLI."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import resources
from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.engine.plan import topological_order
from app.files import FileResolver
from app.graph import serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
SD15 = {  # tensor name -> shape: SD1.5's parameter counts (UNet 860 M, VAE 84 M, CLIP-L 123 M), no data
    "model.diffusion_model.input_blocks.0.0.weight": [860, 1_000_000],
    "first_stage_model.decoder.conv_in.weight": [84, 1_000_000],
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": [123, 1_000_000],
}


def header_only(path: Path, shapes: dict[str, list[int]]) -> Path:
    header = {k: {"dtype": "F16", "shape": v, "data_offsets": [0, 0]} for k, v in shapes.items()}
    data = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(data)) + data)
    return path


@pytest.fixture
def sd15_root(tmp_path, monkeypatch):
    header_only(tmp_path / "checkpoints" / "sd15-sized.safetensors", SD15)
    monkeypatch.setenv("NODELOOM_MODEL_ROOTS", str(tmp_path))
    return tmp_path


def _graph(**params):
    g = serialize.load(ROOT / "graphs" / "txt2img.json", default_registry())
    for key, value in params.items():
        g.set_param(*key.split("__"), value)
    return g


def _estimate(g) -> resources.Estimate:
    order = topological_order(g)
    return resources.estimate(g, default_registry(), order, set(order), FileResolver())


def _device(free: int, rate: float = 1e15):
    return lambda _device: resources.Capacity("the test device", free, rate, 4)


def test_sd15_at_512_matches_the_published_cost(sd15_root):
    found = _estimate(_graph(model__checkpoint="sd15-sized.safetensors", latent__width=512, latent__height=512,
                             schedule__steps=20, guidance__scale=7.5))  # fmt: skip
    # SD1.5's UNet: about 0.8 TFLOP a pass at 512² (64x64 latents); 20 steps x 2 CFG passes, plus the decode
    assert 2.5e13 < found.flops < 5e13
    assert found.weights == pytest.approx(1.067e9)
    assert found.heaviest == "decode"  # an untiled decode holds more than the sampler
    assert found.peak * 4 / 2**30 == pytest.approx(0.5, rel=0.1)  # 2 GB per megapixel, fp32


def test_the_estimate_follows_size_tiling_and_guidance(sd15_root):
    base = dict(model__checkpoint="sd15-sized.safetensors", latent__width=512, latent__height=512)
    small, large = (
        _estimate(_graph(**base)),
        _estimate(_graph(**{**base, "latent__width": 1024, "latent__height": 1024})),
    )
    assert large.flops == pytest.approx(4 * small.flops)
    assert large.peak == pytest.approx(4 * small.peak)
    tiled = _estimate(
        _graph(**{**base, "latent__width": 2048, "latent__height": 2048, "decode__tiled": True})
    )
    assert tiled.heaviest == "sampler" and tiled.peak < large.peak * 4
    no_cfg = _estimate(_graph(**base, guidance__scale=1.0))
    decode = 512 * 512 * 1e7
    assert no_cfg.flops - decode == pytest.approx((small.flops - decode) / 2, rel=1e-3)


def test_an_8192_picture_is_refused_on_a_24_gb_device_and_1024_is_not(sd15_root):
    base = dict(model__checkpoint="sd15-sized.safetensors")
    huge = _estimate(_graph(**base, latent__width=8192, latent__height=8192))
    problems, _ = resources.check(huge, "cpu", _device(24 << 30))
    assert [p.code for p in problems] == ["too_large"]
    assert problems[0].node == "decode"
    assert (
        "needs about 13" in problems[0].message and "the test device has 24.0 GB free" in problems[0].message
    )
    assert "--allow-large" in problems[0].message
    fine = _estimate(_graph(**base, latent__width=1024, latent__height=1024))
    assert resources.check(fine, "cpu", _device(24 << 30))[0] == []


def test_small_runs_never_ask_the_device():
    asked = []
    found = _estimate(_graph())  # the embedded tiny model at 64x64
    assert resources.check(found, "cpu", lambda device: asked.append(device)) == ([], None)
    assert asked == []


def test_the_executor_refuses_then_runs_when_allowed_and_cached_work_costs_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "SMALL_BYTES", 0)
    executor, g = Executor(default_registry(), capacity=_device(1 << 20)), _graph()  # 1 MB free
    settings = RunSettings(device="cpu", output_dir=tmp_path)
    refused = executor.run(g, ["decode"], settings)
    assert refused.status == "invalid"
    assert [str(p.code) for p in refused.problems] == ["too_large"]
    assert not executor.memory.get(refused.keys["model"])  # refused before anything loaded
    allowed = executor.run(g, ["decode"], RunSettings(device="cpu", output_dir=tmp_path, allow_large=True))
    assert allowed.status == "ok"
    again = executor.run(g, ["decode"], settings)  # every node is cached now: nothing left to need memory
    assert again.status == "ok" and again.cached == ["decode"]


def test_a_long_run_is_warned_about(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "SMALL_BYTES", 0)
    events: list[dict] = []
    result = Executor(default_registry(), capacity=_device(1 << 40, rate=1e6)).run(
        _graph(), ["decode"], RunSettings(device="cpu", output_dir=tmp_path), events.append
    )
    assert result.status == "ok"
    warnings = [e for e in events if e["event"] == "warning" and "will take about" in e["message"]]
    assert len(warnings) == 1 and "on the test device" in warnings[0]["message"]


def test_the_cli_refuses_a_run_too_large_for_this_machine(sd15_root, tmp_path):
    env = {**os.environ, "NODELOOM_MODEL_ROOTS": str(sd15_root), "NODELOOM_MAX_MEGAPIXELS": "1000"}
    args = ["--set", "model.checkpoint=sd15-sized.safetensors", "--set", "latent.width=8192",
            "--set", "latent.height=8192", "--set", "latent.batch=4", "--device", "cpu", "--no-disk-cache"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "app", "run", "graphs/txt2img.json", *args, "--output", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr  # 3: invalid graph or file (README)
    assert "needs about" in result.stderr and "--allow-large" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_reports_a_graph_too_large_for_this_machine(sd15_root):
    env = {**os.environ, "NODELOOM_MODEL_ROOTS": str(sd15_root), "NODELOOM_MAX_MEGAPIXELS": "1000"}
    sets = ["--set", "model.checkpoint=sd15-sized.safetensors", "--set", "latent.width=8192",
            "--set", "latent.height=8192"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "app", "validate", "graphs/txt2img.json", *sets, "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert not report["valid"] and report["problems"][0]["code"] == "too_large"
    small = subprocess.run([sys.executable, "-m", "app", "validate", "graphs/txt2img.json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert small.returncode == 0 and small.stdout.strip().endswith("valid (9 nodes, 13 links)")
