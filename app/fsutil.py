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


def write_numbered(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write `data` as `<stem>_00001<suffix>`, or the next number free in `folder`, claiming the name
    atomically: the file is written whole under a temporary name, then hard-linked to its final name,
    which fails if another run took that name first (then the next number is tried). Concurrent runs
    into one folder never overwrite each other, and no reader sees a half-written file."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, _mode_for(folder / f"{stem}{suffix}"))
        number = _next_number(folder, stem, suffix)
        while True:
            target = folder / f"{stem}_{number:05d}{suffix}"
            try:
                _claim(temp, target)
                return target
            except FileExistsError:
                number += 1
    finally:
        Path(temp).unlink(missing_ok=True)


def _next_number(folder: Path, stem: str, suffix: str) -> int:
    """One more than the highest `<stem>_<digits><suffix>` in `folder` (names compared as text, no glob)."""
    head, numbers = f"{stem}_", [0]
    for name in os.listdir(folder):
        middle = name[len(head) : -len(suffix)] if name.startswith(head) and name.endswith(suffix) else ""
        if middle.isdigit():
            numbers.append(int(middle))
    return max(numbers) + 1


def _claim(temp: str, target: Path) -> None:
    """Give the finished temp file the name `target` unless it exists (FileExistsError)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: reserve the name, then move the data over it
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.replace(temp, target)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def user_cache_dir() -> Path:
    """Nodeloom's cache folder: $NODELOOM_CACHE_DIR, else $XDG_CACHE_HOME/nodeloom, else ~/.cache/nodeloom."""
    explicit = os.environ.get("NODELOOM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nodeloom"


def user_state_dir() -> Path:
    """Where Nodeloom keeps state that must survive (the server's job store and token): $NODELOOM_STATE_DIR,
    else $XDG_STATE_HOME/nodeloom, else ~/.local/state/nodeloom."""
    explicit = os.environ.get("NODELOOM_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "nodeloom"
