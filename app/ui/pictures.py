"""Which picture each node shows: the one of the cache key it has now.

Every picture a run produced is kept by the cache key of the node that made it (`gallery`, the last GALLERY
ones). A node shows the picture of its current key — the run's own, one kept from an earlier run (after
undo, or a value typed back), or one read from the disk cache (nodes whose outputs are pictures, read
without torch) — and none when its key has none, so a thumbnail or the Preview dock never shows a result of
other settings. No Qt or torch import here (the docks are told through `emit`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from app.engine.worker import first_image
from app.graph import types as T

GALLERY = 256  # pictures kept by cache key

Entry = tuple[Any, str]  # (uint8 picture, or a list of them for a batch; caption)


class PictureBook:
    """Pictures by key, and what each node shows; `emit(node, picture or None, caption)` tells the docks."""

    def __init__(
        self, editor: Any, emit: Callable[[str, Any, str], None], title: Callable[[str], str]
    ) -> None:
        self.editor, self.emit, self.title = editor, emit, title
        self.gallery: OrderedDict[str, Entry] = OrderedDict()
        self.shown: dict[str, Entry] = {}
        self._none_on_disk: set[str] = set()  # cached keys whose disk entry holds no picture

    def keep(self, key: str, picture: Any, caption: str) -> None:
        self.gallery[key] = (picture, caption)
        self.gallery.move_to_end(key)
        while len(self.gallery) > GALLERY:
            self.gallery.popitem(last=False)

    def show(self, node: str, entry: Entry | None) -> None:
        """Show `entry` for `node`, or nothing (None)."""
        if entry is None:
            if self.shown.pop(node, None) is not None:
                self.editor.scene.show_picture(node, None)
                self.emit(node, None, f"{self.title(node)}: no picture for these settings yet")
            return
        if self.shown.get(node) is entry:
            return
        self.shown[node] = entry
        self.editor.scene.show_picture(node, entry[0])
        self.emit(node, *entry)

    def for_key(self, node_id: str, key: str | None, state: str, disk: Any) -> Entry | None:
        """The picture of `key`: kept from a run, or read from the disk cache when the node is cached and
        its outputs are pictures."""
        if key is None:
            return None
        if key in self.gallery:
            return self.gallery[key]
        node = self.editor.graph.nodes.get(node_id)
        spec = self.editor.registry.get(node.type) if node is not None else None
        pictures = spec is not None and any(o.type == T.IMAGE for o in spec.outputs)
        if state != "cached" or disk is None or not pictures or key in self._none_on_disk:
            return None
        found = first_image(disk.get(key, tensors=False))
        if found is None:
            self._none_on_disk.add(key)  # kept in the worker's memory only, or not a picture
            return None
        height, width = found["image"].shape[:2]
        batch = f", {found['batch']} images" if found["batch"] > 1 else ""
        picture = found.get("images") or found["image"]
        self.keep(key, picture, f"{self.title(node_id)} — {width}×{height}{batch} (cached)")
        return self.gallery[key]
