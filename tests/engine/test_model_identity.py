"""Cache keys name models by content, so two machines (or two folders) holding the same model agree on every
key downstream of it, and a changed model changes them; input files stay (path, size, mtime)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.engine.keys import compute_keys
from app.engine.plan import topological_order
from app.files import FileResolver, content_id, input_dirs
from app.graph import serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = default_registry()
MODEL = ROOT / "assets" / "models" / "tiny-shapes"


def _keys(root: Path) -> dict[str, str]:
    graph = serialize.load(ROOT / "graphs" / "txt2img.json", REGISTRY)
    resolver = FileResolver(base_dirs=input_dirs(ROOT / "graphs"), model_roots=(root,))
    return compute_keys(graph, REGISTRY, topological_order(graph), resolver)[0]


def test_the_same_model_in_two_places_gives_the_same_keys_and_a_changed_one_does_not(tmp_path):
    first, second = tmp_path / "machine_a", tmp_path / "machine_b" / "deeper"
    shutil.copytree(MODEL, first / "tiny-shapes")
    shutil.copytree(MODEL, second / "tiny-shapes")
    os.utime(second / "tiny-shapes" / "unet" / "config.json", (1, 1))  # another copy time: same content
    a, b = _keys(first), _keys(second)
    assert a == b
    weights = second / "tiny-shapes" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle of the weights
    weights.write_bytes(bytes(data))
    changed = _keys(second)
    assert changed["model"] != a["model"] and changed["sampler"] != a["sampler"]
    assert changed["schedule"] == a["schedule"]  # nothing that does not read the model moves


def test_content_ids_read_the_ends_and_the_middle_and_folders_name_their_files(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(5 << 20))
    base = content_id(big)
    for offset in (0, (5 << 20) // 2, (5 << 20) - 1):
        copy = tmp_path / f"copy_{offset}.bin"
        data = bytearray(big.read_bytes())
        data[offset] = 1
        copy.write_bytes(bytes(data))
        assert content_id(copy) != base
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"x")
    before = content_id(folder)
    (folder / "a.bin").rename(folder / "b.bin")
    assert content_id(folder) != before  # the names are part of a folder's identity
    picture = tmp_path / "input.png"
    picture.write_bytes(b"png")
    resolver = FileResolver(model_roots=(folder,))
    assert resolver.identity(picture)[0] == str(picture)  # inputs: path, size, mtime
    assert resolver.identity(folder / "b.bin")[0] == "content"
