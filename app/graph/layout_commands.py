"""Undoable edits of the editor layout alone (node positions, frames, colours, reroute points): commands like
those in commands.py (see its docstring for Graph.layout's keys), which the engine never reads.

Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence
from typing import Any

from app.graph.commands import Command, CommandError
from app.graph.model import Edge, unique_name
from app.graph.ops import Recorder, reroute_key


class Move(Command):
    """Move nodes, frames (top-left) and reroute points to absolute positions; one drag = one step."""

    label = "Move"

    def __init__(
        self,
        nodes: dict[str, Sequence[float]] | None = None,
        frames: dict[str, Sequence[float]] | None = None,
        reroutes: dict[str, Sequence[Sequence[float]]] | None = None,
        gesture: Hashable | None = None,
    ) -> None:
        super().__init__(gesture)
        self.nodes, self.frames, self.reroutes = nodes or {}, frames or {}, reroutes or {}

    def build(self, rec: Recorder) -> None:
        for node_id, (x, y) in self.nodes.items():
            rec.set_layout_item("positions", node_id, [float(x), float(y)])
        frames = rec.graph.layout.get("frames", {})
        for frame_id, (x, y) in self.frames.items():
            frame = copy.deepcopy(frames[frame_id])
            frame["rect"] = [float(x), float(y), *frame["rect"][2:]]
            rec.set_layout_item("frames", frame_id, frame)
        for key, points in self.reroutes.items():
            rec.set_layout_item("reroutes", key, [[float(x), float(y)] for x, y in points])


class SetLayout(Command):
    """Any other layout change: add/edit/remove a frame, a node colour, reroute points (None removes)."""

    def __init__(self, label: str, key: str, item: str, value: Any, gesture: Hashable | None = None) -> None:
        super().__init__(gesture)
        self.label, self.key, self.item, self.value = label, key, item, value

    def build(self, rec: Recorder) -> None:
        rec.set_layout_item(self.key, self.item, self.value)


class AddFrame(Command):
    """A titled, coloured frame around a rectangle; `frame_id` is set by build."""

    label = "Add frame"

    def __init__(self, rect: Sequence[float], title: str = "Frame", colour: str = "#5c6bc0") -> None:
        super().__init__()
        self.rect, self.title, self.colour = [float(v) for v in rect], title, colour
        self.frame_id = ""

    def build(self, rec: Recorder) -> None:
        taken = rec.graph.layout.get("frames", {})
        self.frame_id = unique_name("frame", taken)
        rec.set_layout_item(
            "frames", self.frame_id, {"title": self.title, "colour": self.colour, "rect": self.rect}
        )


class AddReroute(Command):
    """Insert a reroute point on a link at `index` among its points (0 = nearest the source)."""

    label = "Add reroute"

    def __init__(self, edge: Edge, point: Sequence[float], index: int) -> None:
        super().__init__()
        self.edge, self.point, self.index = edge, [float(point[0]), float(point[1])], index

    def build(self, rec: Recorder) -> None:
        if self.edge not in rec.graph.edges:
            raise CommandError(f"no link {self.edge.describe()}")
        key = reroute_key(self.edge.dst, self.edge.dst_port)
        points = copy.deepcopy(rec.graph.layout.get("reroutes", {}).get(key, []))
        points.insert(self.index, self.point)
        rec.set_layout_item("reroutes", key, points)
