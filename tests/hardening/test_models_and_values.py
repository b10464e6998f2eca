"""Model folders with parseable but wrong metadata, values that arrive through links, and requests too big
for one run: each is a problem on its node, never a crash."""

from __future__ import annotations

import json
import struct

import pytest

from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.engine.plan import validate
from app.graph import serialize
from app.graph.model import Edge, Node
from app.registry import default_registry
from tests.nodes import diffusion_helpers as h


def _raw_safetensors(path, header: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)


@pytest.mark.parametrize("header", [b"null", b"123", b"[1, 2]", b'"text"', b"{", b"\xff\xfe"])
def test_a_safetensors_header_that_is_not_a_table_is_a_problem(tmp_path, monkeypatch, header):
    _raw_safetensors(tmp_path / "checkpoints" / "odd.safetensors", header)
    _raw_safetensors(tmp_path / "loras" / "odd.safetensors", header)
    monkeypatch.setenv("NODELOOM_MODEL_ROOTS", str(tmp_path))
    registry = default_registry()
    g = serialize.load(h.ROOT / "graphs" / "lora.json", registry)
    g.set_param("model", "checkpoint", "odd.safetensors")
    g.set_param("lora", "lora_name", "odd.safetensors")
    problems = {p.node: str(p) for p in validate(g, registry)}
    assert set(problems) == {"model", "lora"}
    assert all("not a safetensors file" in text for text in problems.values())


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("unet/config.json", "[1, 2]"),
        ("model_index.json", '"x"'),
        ("unet/config.json", "{"),
    ],
)
def test_configs_of_the_wrong_shape_are_problems(tmp_path, monkeypatch, name, content):
    folder = tmp_path / "checkpoints" / "weird"
    for part in ("unet", "vae", "text_encoder", "scheduler"):
        (folder / part).mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text("{}")
    (folder / name).write_text(content)
    monkeypatch.setenv("NODELOOM_MODEL_ROOTS", str(tmp_path))
    registry = default_registry()
    g = serialize.load(h.ROOT / "graphs" / "txt2img.json", registry)
    g.set_param("model", "checkpoint", "weird")
    problems = [str(p) for p in validate(g, registry) if p.node == "model"]
    assert len(problems) == 1 and problems[0].startswith("node 'model'")


@pytest.mark.parametrize("sidecar", ['{"family": 3}', "[]", "{"])
def test_a_malformed_controlnet_sidecar_is_a_problem(tmp_path, monkeypatch, sidecar):
    folder = tmp_path / "controlnet" / "odd"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"block_out_channels": [4, 8]}))
    (folder / "nodeloom.json").write_text(sidecar)
    monkeypatch.setenv("NODELOOM_MODEL_ROOTS", str(tmp_path))
    registry = default_registry()
    g = serialize.load(h.ROOT / "graphs" / "controlnet_canny.json", registry)
    g.set_param("controlnet", "controlnet", "odd")
    problems = [str(p) for p in validate(g, registry) if p.node == "controlnet"]
    assert len(problems) == 1


def test_a_folder_of_pickled_weights_is_refused_before_diffusers_sees_it(tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "checkpoints" / "pickled"
    shutil.copytree(h.ROOT / "assets" / "models" / "tiny-random-sd15", folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    monkeypatch.setenv("NODELOOM_MODEL_ROOTS", str(tmp_path))
    registry = default_registry()
    g = h.graph()
    g.set_param("model", "checkpoint", "pickled")
    problems = [str(p) for p in validate(g, registry)]
    assert len(problems) == 1 and "weights only in pickle files (diffusion_pytorch_model.bin)" in problems[0]


@pytest.mark.parametrize("value", [-1, 2, 10**400])
def test_a_value_arriving_through_a_link_is_range_checked(value):
    registry = default_registry()
    g = serialize.load(h.ROOT / "graphs" / "shapes.json", registry)
    g.add_node(Node("n", "value.int", params={"value": value}))
    g.connect(Edge("n", "value", "shape", "x"))  # an INT widens into the FLOAT param x (0..1)
    assert validate(g, registry) == []  # the value is only known when n runs
    events = []
    result = Executor(registry).run(g, ["shape"], RunSettings(device="cpu"), on_event=events.append)
    assert result.status == "error"
    assert "node 'shape' 'x'" in result.errors["shape"] and "(from n.value)" in result.errors["shape"]
    assert not any("traceback" in e for e in events)


def test_requests_too_big_for_one_run_are_problems_at_validation(monkeypatch):
    registry = default_registry()
    g = serialize.load(h.ROOT / "graphs" / "txt2img.json", registry)
    g.set_param("latent", "width", 8192)
    g.set_param("latent", "height", 8192)
    g.set_param("prompt", "text", "a red circle " * 10_000)
    problems = {p.node: str(p) for p in validate(g, registry)}
    assert "67.1 megapixels, over the 16" in problems["latent"]
    assert "130000 characters long" in problems["prompt"]
    monkeypatch.setenv("NODELOOM_MAX_MEGAPIXELS", "100")
    g.set_param("prompt", "text", "a red circle")
    assert validate(g, registry) == []


def test_a_name_longer_than_the_file_system_allows_is_a_file_problem():
    from app.files import FileProblem, FileResolver

    resolver = FileResolver()
    for kind in ("image", "model:checkpoints"):
        with pytest.raises(FileProblem, match="cannot look up|not found"):
            resolver.resolve(kind, "x" * 5000)
