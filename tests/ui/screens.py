"""Shared by the screenshot tests: the golden graph (every kind of item) and a tolerant image compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

from app.graph import serialize
from app.graph.commands import AddNode, Connect, ConvertParam, SetMode
from app.graph.history import History
from app.graph.layout_commands import AddFrame, AddReroute
from app.graph.model import Edge, Graph

GOLDEN = Path(__file__).resolve().parent / "golden"
SIZE = (900, 560)


def golden_graph(registry) -> Graph:
    """shapes.json plus a frame, a reroute point, a bypassed node and a value linked into a param socket."""
    history = History(serialize.load("graphs/shapes.json", registry), registry)
    history.push(AddReroute(Edge("shape", "image", "save", "image"), (270, 120), 0))
    value = history.push(AddNode("value.float", (-300, 300)))
    maths = history.push(AddNode("math.binary", (0, 300)))
    history.push(ConvertParam(maths.node_id, "b", True))
    history.push(Connect(Edge(value.node_id, "value", maths.node_id, "a")))
    history.push(SetMode([maths.node_id], "bypass"))
    history.push(AddFrame((-330, 260, 580, 160), "Numbers", "#2e7d32"))
    return history.graph


def to_array(image: QImage) -> np.ndarray:
    """H x W x 3 RGB uint8 pixels."""
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    data = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    pixels = data.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width()]
    return pixels[:, :, 2::-1].copy()  # 0xffRRGGBB words are B, G, R, A bytes in memory


def difference(image: QImage, golden: Path) -> tuple[float, float]:
    """(mean absolute difference per channel, fraction of pixels off by more than 48) vs the golden."""
    expected = to_array(QImage(str(golden)))
    actual = to_array(image)
    assert actual.shape == expected.shape, f"size {actual.shape} differs from the golden's {expected.shape}"
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    return float(diff.mean()), float((diff.max(axis=2) > 48).mean())
