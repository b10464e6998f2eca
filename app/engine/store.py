"""Result stores keyed by cache key: memory (byte budget, LRU) and disk (size cap, LRU, atomic).

The disk store keeps data outputs only (tensors as safetensors, 8-bit images as PNG, scalars as
JSON; see codec.py), never models or pickles, so a new process reuses yesterday's latents. Each entry
is a folder written under a temp name and renamed into place: a crash never leaves half an entry.
Never import torch or Qt here.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from app.engine import codec

DEFAULT_MEMORY_BYTES = 4 * 1024**3
DEFAULT_DISK_BYTES = 2 * 1024**3
_FORMAT = 1


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

    def _folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def has(self, key: str) -> bool:
        return (self._folder(key) / "entry.json").is_file()

    def get(self, key: str) -> dict[str, Any] | None:
        folder = self._folder(key)
        try:
            entry = json.loads((folder / "entry.json").read_text("utf-8"))
            if entry.get("format") != _FORMAT:
                return None
            value = codec.read(folder, entry["value"])
            os.utime(folder / "entry.json")  # recency for eviction
            return value
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - any unreadable entry (truncated, corrupt, old) is a miss, and goes
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def put(self, key: str, outputs: dict[str, Any]) -> bool:
        """Write `outputs` if every value is persistable; returns whether an entry was written."""
        folder = self._folder(key)
        if self.has(key):
            return True
        staging = self.root / "tmp" / f"{key}.{uuid.uuid4().hex}"
        staging.mkdir(parents=True, exist_ok=True)
        try:
            skeleton = codec.write(staging, outputs)
            (staging / "entry.json").write_text(json.dumps({"format": _FORMAT, "value": skeleton}), "utf-8")
            folder.parent.mkdir(parents=True, exist_ok=True)
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
