"""What a node's run function receives: progress, previews, cancellation, device, output folder.

Never import torch or Qt here: the context is plain Python; app/runtime turns `device` into a torch device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.events import EventKind
from app.files import FileResolver

EventSink = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    """Raised inside a node (by `ctx.check_cancelled()`) to stop at a safe point."""


class NodeError(Exception):
    """A problem a node explains to the user (bad input, unreadable file): shown without a traceback."""


class CancelToken:
    """Thread-safe cancel flag shared by a run and whoever may cancel it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class RunSettings:
    """Settings of one run that nodes may read (never part of cache keys)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    output_dir: Path = Path("output")
    graph_json: str = ""  # the graph being run, for embedding in saved images
    resolver: FileResolver = field(default_factory=FileResolver)
    save_outputs: bool = True  # False: output nodes show their results but write no files (Live edits)
    allow_large: bool = False  # True: run even when the estimate says the device lacks the memory


@dataclass
class Context:
    """Handed to every run function as its first argument."""

    node_id: str
    settings: RunSettings
    emit_event: EventSink
    token: CancelToken
    reported: dict[str, Any] = field(default_factory=dict)
    input_keys: dict[str, str] = field(default_factory=dict)  # input port -> cache key of the linked value

    @property
    def device(self) -> str:
        return self.settings.device

    @property
    def output_dir(self) -> Path:
        return self.settings.output_dir

    def emit(self, event: str, **fields: Any) -> None:
        """Send an event about this node (e.g. `output` with the `path` of a written file)."""
        self.emit_event({"event": event, "node": self.node_id, **fields})

    def progress(self, step: float, total: int) -> None:
        """`step` of `total` done; a slow step may report fractions of itself (2.5: halfway through step 3)."""
        self.emit(EventKind.PROGRESS, step=step, total=total)

    def preview(self, image: Any, step: int | None = None, total: int | None = None) -> None:
        """A preview image (numpy HWC uint8 or float 0..1); the CLI drops the pixels, the editor shows them."""
        self.emit(EventKind.PREVIEW, image=image, step=step, total=total)

    def report(self, **fields: Any) -> None:
        """Add fields to this node's `finished` event (e.g. how many steps a cache skipped)."""
        self.reported.update(fields)

    def cancelled(self) -> bool:
        return self.token.cancelled()

    def check_cancelled(self) -> None:
        if self.token.cancelled():
            raise Cancelled()
