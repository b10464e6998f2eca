"""The keymap: which keys trigger which editor actions, read from a JSON data file so it can be
rebound (assets/keymap.json by default, or $NODELOOM_KEYMAP).

    {"canvas": {"search": ["Tab"], ...}, "window": {"save": ["Ctrl+S"], ...}}

Canvas actions work while the canvas has focus; window actions work anywhere in the window (text
fields keep their own Ctrl+Z while they have focus). Pure Python; never import torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "assets" / "keymap.json"
SCOPES = ("canvas", "window")


class KeymapError(ValueError):
    """A keymap file that cannot be used; the message names the file and the entry."""


def load_keymap(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, list[str]]]:
    """Scope -> action -> key sequences (Qt portable text such as "Ctrl+Shift+Z")."""
    source = Path(path or os.environ.get("NODELOOM_KEYMAP") or DEFAULT)
    try:
        data = json.loads(source.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise KeymapError(f"{source}: cannot read the keymap ({error})") from None
    if not isinstance(data, dict) or set(data) - set(SCOPES):
        raise KeymapError(f"{source}: the keymap must be an object with the keys {', '.join(SCOPES)}")
    keymap: dict[str, dict[str, list[str]]] = {}
    for scope in SCOPES:
        entries = data.get(scope, {})
        if not isinstance(entries, dict):
            raise KeymapError(f"{source}: '{scope}' must map action names to lists of keys")
        for action, keys in entries.items():
            if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
                raise KeymapError(f"{source}: {scope}.{action} must be a list of key names")
        keymap[scope] = {action: list(keys) for action, keys in entries.items()}
    seen: dict[str, str] = {}
    for scope, entries in keymap.items():
        for action, keys in entries.items():
            for key in keys:
                where = f"{scope}.{action}"
                if key.lower() in seen:
                    raise KeymapError(f"{source}: {key} is bound twice ({seen[key.lower()]} and {where})")
                seen[key.lower()] = where
    return keymap
