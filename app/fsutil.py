"""Small file-system helpers shared by every layer: atomic writes and cache-directory lookup.

Pure Python: never import Qt or torch here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` via a temp file in the same folder and a rename: never a half file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, _mode_for(target))  # mkstemp makes 0600; a saved file gets the usual permissions
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def _mode_for(target: Path) -> int:
    """The existing file's permissions, or what a plain open() would give under the current umask."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def user_cache_dir() -> Path:
    """Nodeloom's cache folder: $NODELOOM_CACHE_DIR, else $XDG_CACHE_HOME/nodeloom, else ~/.cache/nodeloom."""
    explicit = os.environ.get("NODELOOM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nodeloom"
