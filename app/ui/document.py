"""Editor state on disk outside graph files: the recent-files list and the crash-recovery file.

Autosave writes the open graph (and the path of the file it belongs to) to a recovery file every
minute while there are unsaved changes; a clean exit or a save removes it, so a recovery file found
at start means the last session ended without saving, and the editor offers it. Both live under
the user cache folder (`$NODELOOM_CACHE_DIR`, else ~/.cache/nodeloom) in `editor/`.
Pure Python: never import Qt or torch here.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.fsutil import atomic_write_text, user_cache_dir
from app.graph import serialize
from app.graph.model import Graph, SpecLookup

RECENT_LIMIT = 10


def state_dir() -> Path:
    return user_cache_dir() / "editor"


def recovery_path() -> Path:
    return state_dir() / "recovery.json"


def write_recovery(graph: Graph, document: Path | None) -> Path:
    """Save the unsaved graph for crash recovery (atomic, so a crash mid-write keeps the last one)."""
    payload = {"document": str(document) if document else None, "graph": serialize.to_dict(graph)}
    return atomic_write_text(recovery_path(), json.dumps(payload, ensure_ascii=False))


def read_recovery(specs: SpecLookup | None = None) -> tuple[Graph, Path | None] | None:
    """The graph left by a session that did not end cleanly, with its document path; None if none."""
    path = recovery_path()
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text("utf-8"))
        graph = serialize.from_dict(payload["graph"], specs, source=str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    document = payload.get("document")
    return graph, Path(document) if document else None


def clear_recovery() -> None:
    recovery_path().unlink(missing_ok=True)


def recent_files() -> list[Path]:
    try:
        listed = json.loads((state_dir() / "recent.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(p) for p in listed if isinstance(p, str)] if isinstance(listed, list) else []


def add_recent(path: Path) -> list[Path]:
    """Put `path` first in the recent-files list (kept to RECENT_LIMIT entries)."""
    path = path.resolve()
    files = [path, *[p for p in recent_files() if p != path]][:RECENT_LIMIT]
    atomic_write_text(state_dir() / "recent.json", json.dumps([str(p) for p in files], indent=1))
    return files


def preferences() -> dict:
    """The editor's settings (View > Left-drag pans, ...), {} when none were saved or the file is unreadable."""
    try:
        data = json.loads((state_dir() / "preferences.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def set_preference(name: str, value: object) -> dict:
    """Save one editor setting (the file is replaced whole)."""
    data = {**preferences(), name: value}
    atomic_write_text(state_dir() / "preferences.json", json.dumps(data, indent=1))
    return data
