"""`nodeloom models` lists a ComfyUI/A1111-style models folder per kind and family from headers alone."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def header_only(path: Path, shapes: dict[str, list[int]], metadata: dict | None = None) -> Path:
    """A .safetensors file with these tensor names and shapes and no data (only headers are read)."""
    header: dict = {k: {"dtype": "F16", "shape": v, "data_offsets": [0, 0]} for k, v in shapes.items()}
    if metadata:
        header["__metadata__"] = metadata
    data = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(data)) + data)
    return path


def models(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NODELOOM_MODEL_ROOTS": str(root), "NODELOOM_CONFIG": str(root / "none.json")}
    return subprocess.run(
        [sys.executable, "-m", "app", "models", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_models_lists_every_kind_with_its_family(tmp_path):
    from tests.nodes.sdxl_helpers import write_stripped

    root = tmp_path / "ComfyUI" / "models"
    (root / "checkpoints").mkdir(parents=True)
    write_stripped(root / "checkpoints" / "sd_xl_base_1.0.safetensors", "sdxl")
    (root / "checkpoints" / "old.ckpt").write_bytes(b"pickle")
    header_only(
        root / "Lora" / "style.safetensors",  # A1111's folder name
        {"lora_unet_input_blocks_4_1_proj_in.lora_down.weight": [4, 640], "lora_te2_text_model_x.alpha": []},
    )
    header_only(
        root / "loras" / "sd15-detail.safetensors",
        {"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": [8, 768]},
    )
    header_only(root / "embeddings" / "neg.safetensors", {"emb_params": [4, 768]})
    header_only(root / "embeddings" / "xl-neg.safetensors", {"clip_l": [2, 768], "clip_g": [2, 1280]})
    header_only(root / "vae" / "sdxl_vae.safetensors", {"encoder.conv_out.weight": [8, 512, 3, 3]})
    header_only(
        root / "clip" / "clip_l.safetensors", {"text_model.embeddings.token_embedding.weight": [49408, 768]}
    )
    header_only(root / "unet" / "flux1-dev.safetensors", {"double_blocks.0.img_attn.norm.key_norm.scale": [128], "guidance_in.in_layer.weight": [3072, 256]})  # fmt: skip
    header_only(root / "checkpoints" / "flux1-dev-fp8.safetensors", {  # ComfyUI's all-in-one
        "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": [128],
        "model.diffusion_model.guidance_in.in_layer.weight": [3072, 256],
        "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
        "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight": [4096, 4096],
    })  # fmt: skip
    result = models(root, "--json")
    assert result.returncode == 0, result.stderr
    found = {(e["kind"], e["name"]): e for e in json.loads(result.stdout)}
    expected = {
        ("checkpoints", "checkpoints/sd_xl_base_1.0.safetensors"): "sdxl",
        ("checkpoints", "checkpoints/old.ckpt"): "?",
        ("loras", "Lora/style.safetensors"): "sdxl",
        ("loras", "loras/sd15-detail.safetensors"): "sd15",
        ("embeddings", "embeddings/neg.safetensors"): "sd15",
        ("embeddings", "embeddings/xl-neg.safetensors"): "sdxl",
        ("vae", "vae/sdxl_vae.safetensors"): "sdxl",
        ("text_encoders", "clip/clip_l.safetensors"): "clip_l",
        ("diffusion_models", "unet/flux1-dev.safetensors"): "flux-dev",
        ("checkpoints", "checkpoints/flux1-dev-fp8.safetensors"): "flux-dev",
    }
    for key, family in expected.items():
        assert key in found, (key, sorted(found))
        assert found[key]["family"] == family, found[key]
    assert "pickles can run code" in found[("checkpoints", "checkpoints/old.ckpt")]["detail"]
    assert (
        found[("checkpoints", "checkpoints/flux1-dev-fp8.safetensors")]["detail"]
        == "single file with clip_l, t5xxl"
    )
    text = models(root, "--kind", "loras")
    assert text.returncode == 0 and "Lora/style.safetensors" in text.stdout and "vae" not in text.stdout
    assert str(root) in text.stdout


def test_run_stacks_loras_from_the_command_line(tmp_path):
    from app.graph import pngmeta
    from tests.nodes import lora_helpers as L
    from tools import make_tiny_random_sdxl as xl

    parts = xl.make_components(seed=0)  # the shipped tiny-random-sdxl's architecture
    for index, name in enumerate(("detail", "style")):
        pairs = L.make_pairs(parts["unet"], {"text_encoder_2": parts["text_encoder_2"]}, seed=index)
        L.save(L.kohya(pairs, sdxl=True), tmp_path / "models" / "loras" / f"{name}.safetensors")
    env = {**os.environ, "NODELOOM_MODEL_ROOTS": str(tmp_path / "models")}
    command = [sys.executable, "-m", "app", "run", "graphs/sdxl_txt2img.json", "--set", "schedule.steps=2"]
    command += ["--lora", "detail.safetensors:0.8", "--lora", "style.safetensors:1.2:0.5", "--json-events"]
    command += ["--no-disk-cache", "-o", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["node"] for e in events if e["event"] == "finished"} >= {"lora", "lora_2", "sampler"}
    assert not [e for e in events if e["event"] == "warning"]
    written = next(e["path"] for e in events if e["event"] == "output")
    saved = json.loads(pngmeta.read_text(Path(written).read_bytes())["nodeloom"])
    assert saved["nodes"]["lora_2"]["params"] == {
        "lora_name": "style.safetensors",
        "strength_model": 1.2,
        "strength_clip": 0.5,
    }
    assert [e["from"] for e in saved["edges"] if e["to"] == ["sampler", "model"]] == [["lora_2", "model"]]
    bad = subprocess.run(
        command[:7] + ["--lora", "x:strong"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "strengths must be numbers" in bad.stderr
