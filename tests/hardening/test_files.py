"""Hostile graph files and PNGs: every one ends in a GraphFileError or problems, never a crash or a hang."""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest

from app.engine.plan import validate
from app.graph import pngmeta, serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
SHAPES = json.loads((ROOT / "graphs" / "shapes.json").read_text())


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def png_with(*chunks: bytes) -> bytes:
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    return pngmeta.SIGNATURE + header + b"".join(chunks) + _chunk(b"IEND", b"")


def test_a_text_chunk_that_inflates_to_gigabytes_is_skipped_in_bounded_memory(tmp_path):
    bomb = zlib.compress(b"\0" * (256 * 2**20), 9)  # 256 MiB of zeros in ~250 KB
    path = tmp_path / "bomb.png"
    path.write_bytes(
        png_with(_chunk(b"zTXt", b"nodeloom\0\0" + bomb), _chunk(b"iTXt", b"nodeloom\0\1\0\0\0" + bomb))
    )
    tracemalloc.start()
    try:
        with pytest.raises(serialize.GraphFileError, match="carries no Nodeloom graph"):
            serialize.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * pngmeta.TEXT_LIMIT  # the inflater may grow its buffer to twice the cap once


@pytest.mark.parametrize(
    "chunk",
    [
        _chunk(b"zTXt", b"nodeloom\0\0not zlib at all"),
        _chunk(b"iTXt", b"nodeloom"),  # an empty body after the keyword
        _chunk(b"iTXt", b"nodeloom\0\1\0\0\0" + zlib.compress(b"{}")[:-3]),  # cut-off stream
        _chunk(b"iTXt", b"nodeloom\0\0\0\0\0\xff\xfe not utf-8"),
    ],
)
def test_malformed_text_chunks_mean_no_graph(tmp_path, chunk):
    path = tmp_path / "odd.png"
    path.write_bytes(png_with(chunk))
    with pytest.raises(serialize.GraphFileError, match="carries no Nodeloom graph"):
        serialize.load(path)


def test_only_the_keys_asked_for_are_decoded():
    data = png_with(
        _chunk(b"tEXt", b"Comment\0" + b"x" * 1000),
        _chunk(b"iTXt", b"nodeloom\0\1\0\0\0" + zlib.compress(b'{"a": 1}')),
    )
    assert pngmeta.read_text(data, keys=("nodeloom",)) == {"nodeloom": '{"a": 1}'}
    assert pngmeta.read_text(data, keys=("prompt", "workflow")) == {}


def _load(text: str) -> str:
    try:
        serialize.loads(text, default_registry())
    except serialize.GraphFileError as error:
        return str(error)
    return "loaded"


def test_json_that_would_crash_later_is_refused_with_a_reason():
    assert "nested too deeply" in _load("[" * 100_000 + "]" * 100_000)
    assert "digits" in _load('{"schema_version": 1, "meta": {"n": ' + "9" * 5000 + "}}")
    assert "lone UTF-16 surrogate" in _load('{"schema_version": 1, "meta": {"t": "\\ud800"}}')
    duplicate = '{"schema_version": 1, "nodes": {"a": {"type": "value.int"}, "a": {"type": "value.float"}}}'
    assert "'a' appears twice" in _load(duplicate)
    trailing = {"schema_version": 1, "nodes": {"a\n": {"type": "value.int"}}}
    assert "control characters" in _load(json.dumps(trailing))
    long_id = {"schema_version": 1, "nodes": {"n" * 300: {"type": "value.int"}}}
    assert "at most 200" in _load(json.dumps(long_id))


def test_values_json_carries_fine_but_params_refuse_are_problems(tmp_path):
    registry = default_registry()
    graph = serialize.from_dict(json.loads(json.dumps(SHAPES)), registry)
    graph.set_param("shape", "size", 10**400)  # an int no float can hold
    graph.set_param("save", "prefix", "a\ud800")  # a lone surrogate, e.g. from a shell's argv
    problems = {(p.where, p.code) for p in validate(graph, registry)}
    assert problems == {("size", "invalid_input_type"), ("prefix", "invalid_input_type")}


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_devices_fifos_and_folders_are_refused_without_reading(tmp_path, special):
    path = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "pipe", "folder": tmp_path}[special]
    if special == "fifo":
        os.mkfifo(path)
    with pytest.raises(serialize.GraphFileError, match="folder|not a regular file"):
        serialize.load(path)  # returns at once: a FIFO is never opened


def test_a_file_larger_than_a_graph_can_be_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.json"
    with path.open("wb") as handle:
        handle.truncate(serialize.FILE_LIMIT + 1)  # sparse: no disk used
    with pytest.raises(serialize.GraphFileError, match="larger than"):
        serialize.load(path)
