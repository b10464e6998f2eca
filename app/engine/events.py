"""The events of a run and the codes of validation problems, defined once.

The executor and nodes emit events as plain dicts `{"event": KIND, "node": id, ...}` (one JSON object per
line from `nodeloom run --json-events`); the worker adds its own kinds for the editor. Kinds are `EventKind`
members, which are strings, so a dict compares and serialises exactly as before. The TypedDicts say which
fields each kind carries. `ProblemCode` (defined with the graph data in app/graph/codes.py, re-exported here)
gives every validation problem a machine-readable code beside its prose.

Never import torch or Qt here.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

from app.graph.codes import ProblemCode

__all__ = ["Event", "EventKind", "Error", "Finished", "ProblemCode", "Progress", "RunDone", "RunStatus"]


class EventKind(StrEnum):
    # what the executor and nodes report
    STARTED = "started"  # node, type
    PROGRESS = "progress"  # node, step, total
    PREVIEW = "preview"  # node, image (dropped by the JSON printer), step, total
    CACHED = "cached"  # node, source ("memory" | "disk"), key
    FINISHED = "finished"  # node, duration, key, + what the node reported (skipped_blocks, lora_layers...)
    ERROR = "error"  # node, message, inputs, traceback (unexpected exceptions only)
    BLOCKED = "blocked"  # node, by
    CANCELLED = "cancelled"  # node
    OUTPUT = "output"  # node, path
    WARNING = "warning"  # node, message
    MODEL = "model"  # node, action ("load" | "offload" | "free"), path, ...
    # what the worker process adds for the editor
    WORKER_READY = "worker_ready"
    IMAGE = "image"  # node, run, + the picture
    DEVICE = "device"  # run, name, memory
    RUN_DONE = "run_done"  # run, status, problems, errors


RunStatus = Literal["ok", "invalid", "error", "cancelled", "killed"]


class Event(TypedDict):
    event: EventKind
    node: NotRequired[str]


class Progress(Event):
    step: int
    total: int


class Finished(Event):
    duration: float
    key: str


class Error(Event):
    message: str
    inputs: NotRequired[dict[str, str]]
    traceback: NotRequired[str]


class RunDone(TypedDict):
    event: EventKind
    run: Any
    status: RunStatus
    problems: list[dict[str, Any]]
    errors: dict[str, str]


def jsonable(event: dict[str, Any]) -> dict[str, Any]:
    """The event without the values JSON cannot carry (pictures, arrays): what logs and --json-events keep."""
    out = {}
    for key, value in event.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out
