"""Fuzzing what comes from outside: graph files, PNG text chunks, --set values, model-folder metadata and
disk-cache entries. Each case must end in the documented error types (never another exception), and cached
values come back exactly or not at all. $NODELOOM_FUZZ_EXAMPLES sets the cases per test (default 300; the
CI run tries about 2 000 in all)."""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import UsageError, apply_set
from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.engine.plan import validate
from app.engine.store import DiskStore
from app.graph import pngmeta, serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("NODELOOM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
REGISTRY = default_registry()
GRAPHS = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "graphs").glob("*.json"))}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
)


def _paths(data, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_graphs(draw):
    """A shipped graph with a few values replaced or removed anywhere in it."""
    data = copy.deepcopy(GRAPHS[draw(st.sampled_from(sorted(GRAPHS)))])
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p, _ in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return data


@FUZZ
@given(mutated_graphs())
def test_mutated_graph_files_load_or_fail_cleanly_and_validate_without_crashing(data):
    try:
        text = json.dumps(data, allow_nan=True)
    except ValueError:
        return
    try:
        graph = serialize.loads(text, REGISTRY)
    except serialize.GraphFileError:
        return
    problems = validate(graph, REGISTRY)
    assert all(isinstance(p.message, str) and p.code for p in problems)


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_as_a_graph_file_fail_cleanly(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("raw") / "g.json"
    path.write_bytes(raw)
    try:
        serialize.load(path, REGISTRY)
    except serialize.GraphFileError:
        pass


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


text_bodies = st.one_of(
    st.binary(max_size=200),
    st.tuples(
        st.sampled_from([b"nodeloom", b"prompt", b"workflow", b""]),
        st.binary(max_size=4),
        st.binary(max_size=300),
    ).map(lambda t: t[0] + b"\0" + t[1] + zlib.compress(t[2])),
    st.integers(1, 4000).map(lambda n: b"nodeloom\0\0" + zlib.compress(b"x" * n * 1000)),
)


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(list(pngmeta.TEXT_KINDS) + [b"IDAT", b"zzzz"]), text_bodies), max_size=6
    )
)
def test_png_text_chunks_never_crash_and_never_inflate_past_the_cap(chunks):
    data = pngmeta.SIGNATURE + b"".join(_chunk(kind, body) for kind, body in chunks)
    data = data[: len(data) - (len(data) % 7 if chunks and len(chunks) % 2 else 0)]  # sometimes truncated
    texts = pngmeta.read_text(data, limit=64 * 1024)
    assert all(len(value) <= 64 * 1024 for value in texts.values())


TXT2IMG = serialize.from_dict(GRAPHS["txt2img"], REGISTRY)
PARAMS = [(node.id, p.name) for node in TXT2IMG for p in REGISTRY.get(node.type).params]


@FUZZ
@given(
    st.sampled_from(PARAMS),
    st.text(max_size=30) | st.sampled_from(["inf", "-1", "1e999", "0x10", "nan", "9" * 5000]),
)
def test_set_values_are_refused_as_usage_errors_or_validate_without_crashing(target, text):
    graph = TXT2IMG.copy()
    try:
        apply_set(graph, REGISTRY, f"{target[0]}.{target[1]}={text}")
    except UsageError:
        return
    validate(graph, REGISTRY)


@FUZZ
@given(
    st.sampled_from(["model_index.json", "unet/config.json", "nodeloom.json", "header"]),
    json_values.map(lambda v: json.dumps(v)) | st.text(max_size=40),
)
def test_model_folder_metadata_never_crashes_validation(tmp_path_factory, which, content):
    root = tmp_path_factory.mktemp("models")
    folder = root / "checkpoints" / "odd"
    for part in ("unet", "vae", "text_encoder", "scheduler"):
        (folder / part).mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text("{}")
    single = root / "checkpoints" / "odd.safetensors"
    header = content.encode("utf-8", "surrogatepass") if which == "header" else b"{}"
    single.write_bytes(struct.pack("<Q", len(header)) + header)
    if which != "header":
        (folder / which).write_text(content, encoding="utf-8", errors="surrogatepass")
    from app.files import FileResolver

    resolver = FileResolver(model_roots=(root,))
    graph = TXT2IMG.copy()
    for name in ("odd", "odd.safetensors"):
        graph.set_param("model", "checkpoint", name)
        validate(graph, REGISTRY, resolver)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "truncate", "swap", "entry", "delete", "extra"]), st.integers(0, 10**6)
        ),
        min_size=1,
        max_size=3,
    ),
    json_values,
)
def test_a_damaged_cache_serves_the_exact_value_or_nothing(tmp_path_factory, damage, junk):
    disk = DiskStore(tmp_path_factory.mktemp("cache"))
    values = {
        "aa1": {"latent": np.arange(12, dtype=np.float32).reshape(3, 4), "n": 1},
        "bb2": {"image": np.full((2, 2, 3), 9, np.uint8), "n": 2},
    }
    for key, value in values.items():
        assert disk.put(key, value)
    for action, number in damage:
        folder = disk._folder("aa1")
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        if not files:
            continue
        target = files[number % len(files)]
        if action == "flip":
            data = bytearray(target.read_bytes())
            if data:
                data[number % len(data)] ^= 1 << (number % 8)
                target.write_bytes(bytes(data))
        elif action == "truncate":
            target.write_bytes(target.read_bytes()[: number % (target.stat().st_size + 1)])
        elif action == "swap" and disk._folder("bb2").is_dir():
            other = sorted(disk._folder("bb2").iterdir())[number % 2]
            first, second = target.read_bytes(), other.read_bytes()
            target.write_bytes(second)
            other.write_bytes(first)
        elif action == "entry":
            (folder / "entry.json").write_text(json.dumps(junk, allow_nan=True))
        elif action == "delete":
            target.unlink()
        else:
            (folder / "extra.bin").write_bytes(b"x")
    for key, expected in values.items():
        got = disk.get(key)
        if got is not None:
            assert got.keys() == expected.keys()
            assert all(np.array_equal(got[k], expected[k]) for k in expected)


@settings(max_examples=max(4, EXAMPLES // 40), deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_graphs())
def test_the_command_line_exits_with_a_documented_code_and_no_traceback(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "g.json"
    path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8", errors="surrogatepass")
    run = subprocess.run(
        [sys.executable, "-m", "app", "validate", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode in (0, 2, 3, 4), run.stderr
    assert "Traceback" not in run.stderr


def test_a_mutated_torch_free_graph_runs_to_an_outcome():
    """shapes.json needs no model: run a few mutations of it end to end."""
    executor = Executor(REGISTRY)
    for value in (0.0, 1.0, 0.5, -3.0, 1e308):
        graph = serialize.from_dict(GRAPHS["shapes"], REGISTRY)
        graph.set_param("shape", "size", value)
        result = executor.run(graph, ["shape"], RunSettings(device="cpu"))
        assert result.status in ("ok", "invalid")
