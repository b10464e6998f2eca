"""Result stores keyed by cache key: memory (byte budget, LRU) and disk (size cap, LRU, atomic).

The disk store keeps data outputs only (tensors as safetensors, 8-bit images as PNG, scalars as
JSON; see codec.py), never models or pickles, so a new process reuses yesterday's latents. Each entry
is a folder written under a temp name and renamed into place: a crash never leaves half an entry.
An entry records its key, the sha256 of every file and of the record itself; a read that finds another
key, a changed byte or a missing file is a miss and the entry is removed, so a damaged cache heals instead of lying. A cache
that cannot record recency (read-only) still hits; staging folders a killed process left are swept.
Never import torch or Qt here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from app.engine import codec

DEFAULT_MEMORY_BYTES = 4 * 1024**3
DEFAULT_DISK_BYTES = 2 * 1024**3
_FORMAT = 2  # 2: the entry records its key and its files' sha256
STALE_STAGING_SECONDS = 3600  # a staging folder this old belongs to a process that died


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _entry_digest(entry: dict[str, Any]) -> str:
    """sha256 of an entry record without its own digest (canonical JSON)."""
    rest = {k: v for k, v in entry.items() if k != "digest"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode("utf-8")).hexdigest()


class MemoryStore:
    """Outputs by key, evicting the least recently used entries beyond `budget` bytes."""

    def __init__(self, budget: int = DEFAULT_MEMORY_BYTES) -> None:
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: str, outputs: dict[str, Any]) -> bool:
        """Keep `outputs`; returns False when they alone exceed the budget (then nothing is kept)."""
        size = codec.nbytes(outputs)
        with self._lock:
            if key in self._entries:
                self.used -= self._entries.pop(key)[1]
            if size > self.budget:
                return False
            self._entries[key] = (outputs, size)
            self.used += size
            while self.used > self.budget:
                _, (_, freed) = self._entries.popitem(last=False)
                self.used -= freed
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.used = 0


class DiskStore:
    """Persistable outputs as folders `<root>/<key[:2]>/<key>/`, capped at `cap` bytes (LRU by mtime)."""

    def __init__(self, root: str | os.PathLike[str], cap: int = DEFAULT_DISK_BYTES) -> None:
        self.root = Path(root)
        self.cap = cap
        self._total: int | None = None  # bytes on disk, measured once then tracked
        self._swept = False

    def _folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def has(self, key: str) -> bool:
        return (self._folder(key) / "entry.json").is_file()

    def get(self, key: str, tensors: bool = True) -> dict[str, Any] | None:
        """The outputs stored under `key`, or None (a damaged or foreign entry is removed). `tensors=False`
        reads only entries without torch tensors (None for the others): the editor reads pictures this way
        without importing torch."""
        folder = self._folder(key)
        if not tensors and (folder / "tensors.safetensors").exists():
            return None
        try:
            entry = json.loads((folder / "entry.json").read_text("utf-8"))
            if not self._intact(folder, key, entry):
                raise ValueError("entry does not match its key or its files")
            value = codec.read(folder, entry["value"])
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError("entry is not a dict of outputs")
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - any unreadable entry (truncated, corrupt, old) is a miss, and goes
            self.discard(key)
            return None
        try:
            os.utime(folder / "entry.json")  # recency for eviction
        except OSError:
            pass  # a read-only cache still serves its entries
        return value

    @staticmethod
    def _intact(folder: Path, key: str, entry: Any) -> bool:
        if not isinstance(entry, dict) or entry.get("format") != _FORMAT or entry.get("key") != key:
            return False
        if entry.get("digest") != _entry_digest(entry):  # the skeleton itself may have been changed
            return False
        files = entry.get("files")
        if not isinstance(files, dict):
            return False
        present = {f.name for f in folder.iterdir() if f.is_file() and f.name != "entry.json"}
        return present == set(files) and all(
            _sha256(folder / name) == digest for name, digest in files.items()
        )

    def discard(self, key: str) -> None:
        """Remove the entry of `key` (a cached value that turned out unusable)."""
        shutil.rmtree(self._folder(key), ignore_errors=True)

    def put(self, key: str, outputs: dict[str, Any]) -> bool:
        """Write `outputs` if every value is persistable; returns whether an entry was written."""
        folder = self._folder(key)
        if self.has(key):
            return True
        self._sweep_staging()
        staging = self.root / "tmp" / f"{key}.{uuid.uuid4().hex}"
        staging.mkdir(parents=True, exist_ok=True)
        try:
            skeleton = codec.write(staging, outputs)
            files = {f.name: _sha256(f) for f in staging.iterdir() if f.is_file()}
            entry = {"format": _FORMAT, "key": key, "files": files, "value": skeleton}
            entry["digest"] = _entry_digest(entry)
            (staging / "entry.json").write_text(json.dumps(entry), "utf-8")
            folder.parent.mkdir(parents=True, exist_ok=True)
            if folder.exists():  # what a crash or a damaged write left: never let it block the key
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        except codec.NotPersistable:
            return False
        except OSError:
            if self.has(key):  # another process won the race: fine
                return True
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if self._total is None:
            self._total = sum(size for _, size, _ in self.entries())
        else:
            self._total += sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        if self._total > self.cap:
            self._evict()
        return True

    def _sweep_staging(self) -> None:
        """Remove staging folders older than an hour (a process killed mid-write left them)."""
        if self._swept:
            return
        self._swept = True
        now = time.time()
        for folder in (self.root / "tmp").iterdir() if (self.root / "tmp").is_dir() else []:
            try:
                if now - folder.stat().st_mtime > STALE_STAGING_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, folder) of every entry."""
        found = []
        for shard in self.root.iterdir() if self.root.is_dir() else []:
            if not shard.is_dir() or shard.name == "tmp":
                continue
            for folder in shard.iterdir():
                marker = folder / "entry.json"
                if marker.is_file():
                    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                    found.append((marker.stat().st_mtime, size, folder))
        return found

    def _evict(self) -> None:
        entries = sorted(self.entries())
        total = sum(size for _, size, _ in entries)
        for _, size, folder in entries:
            if total <= self.cap:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
        self._total = total
