"""The disk cache never serves a damaged or foreign entry: bit flips, swapped entries and wrong types are
misses that heal; a read-only cache still hits; a blocked or stale folder never stops caching."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

from app.engine import store as store_module
from app.engine.executor import Executor
from app.engine.store import DiskStore
from tests.conftest import chain


def _put(disk: DiskStore, key: str, value: float) -> None:
    assert disk.put(key, {"value": np.full((4, 4), value, np.float32), "n": value})


def _flip_a_byte(folder) -> None:
    target = next(f for f in folder.iterdir() if f.suffix == ".safetensors")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))


def test_a_flipped_byte_is_a_miss_and_the_entry_goes(tmp_path):
    disk = DiskStore(tmp_path)
    _put(disk, "k1", 1.0)
    _flip_a_byte(disk._folder("k1"))
    assert disk.get("k1") is None
    assert not disk._folder("k1").exists()


def test_swapped_entries_are_misses(tmp_path):
    disk = DiskStore(tmp_path)
    _put(disk, "aa1", 1.0)
    _put(disk, "bb2", 2.0)
    first, second = disk._folder("aa1"), disk._folder("bb2")
    shutil.move(first, tmp_path / "swap")
    shutil.move(second, first)
    shutil.move(tmp_path / "swap", second)
    assert disk.get("aa1") is None and disk.get("bb2") is None


def test_an_entry_of_the_wrong_shape_is_recomputed_not_fatal(tmp_path, counting):
    graph = chain(2)
    first = Executor(counting.registry, disk=DiskStore(tmp_path)).run(graph)
    key = first.keys["add_2"]
    disk = DiskStore(tmp_path)
    disk.discard(key)
    assert disk.put(key, {"other": 1.0})  # a valid entry without the node's output port
    counting.runs.clear()
    again = Executor(counting.registry, disk=DiskStore(tmp_path)).run(graph)
    assert again.status == "ok" and counting.runs["add_2"] == 1
    assert DiskStore(tmp_path).get(key) == {"value": 1.0}  # rewritten with the right outputs


def test_a_read_only_cache_still_hits(tmp_path, monkeypatch):
    disk = DiskStore(tmp_path)
    _put(disk, "k1", 1.0)

    def refuse(*_args, **_kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(store_module.os, "utime", refuse)
    value = disk.get("k1")
    assert value is not None and value["n"] == 1.0


def test_a_leftover_folder_does_not_block_its_key_and_old_staging_is_swept(tmp_path):
    disk = DiskStore(tmp_path)
    blocked = disk._folder("k1")
    blocked.mkdir(parents=True)
    (blocked / "junk.bin").write_bytes(b"half of something")  # a crash left this, without entry.json
    stale = tmp_path / "tmp" / "k9.dead"
    stale.mkdir(parents=True)
    old = time.time() - 2 * store_module.STALE_STAGING_SECONDS
    os.utime(stale, (old, old))
    _put(disk, "k1", 1.0)
    assert disk.get("k1")["n"] == 1.0
    assert not stale.exists()


@pytest.mark.parametrize(
    "entry", ["[]", "null", '{"format": 2}', '{"format": 2, "key": "k1", "files": {}}', "{"]
)
def test_entry_files_that_are_not_entries_are_misses(tmp_path, entry):
    disk = DiskStore(tmp_path)
    _put(disk, "k1", 1.0)
    (disk._folder("k1") / "entry.json").write_text(entry)
    assert disk.get("k1") is None


def test_entries_record_their_key_and_file_hashes(tmp_path):
    disk = DiskStore(tmp_path)
    _put(disk, "k1", 1.0)
    entry = json.loads((disk._folder("k1") / "entry.json").read_text())
    assert entry["key"] == "k1" and entry["format"] == 2 and set(entry["files"]) == {"arrays.safetensors"}


def test_an_edited_entry_record_is_a_miss(tmp_path):
    """Found by the fuzz suite: one flipped bit renamed an output inside entry.json ('latent' -> 'natent')."""
    disk = DiskStore(tmp_path)
    assert disk.put("k1", {"latent": np.zeros(3, np.float32)})
    record = disk._folder("k1") / "entry.json"
    record.write_text(record.read_text().replace('"latent"', '"natent"'))
    assert disk.get("k1") is None
