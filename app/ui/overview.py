"""The zoomed-out canvas: below LOD_DETAIL the scene stops painting nodes and links one item at a time
(each item costs a Python call per frame) and the view draws them in a few batched calls instead:
one filled-rectangle call per title colour and one path per link colour. The items stay in the scene,
so hit tests, rubber-band selection and dragging work as usual. Imports Qt only; never torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from app.ui import theme

if TYPE_CHECKING:
    from app.ui.scene import GraphScene

_NO_CONTENTS = QGraphicsItem.GraphicsItemFlag.ItemHasNoContents


def set_overview(scene: GraphScene, on: bool) -> None:
    """Switch node and link items between painting themselves and being drawn by `paint_overview`."""
    if scene.overview == on:
        return
    scene.overview = on
    for item in [*scene.nodes.values(), *scene.edges.values()]:
        item.setFlag(_NO_CONTENTS, on)
    scene.update()


def paint_overview(scene: GraphScene, painter: QPainter, exposed: QRectF) -> None:
    """Every node as a box in its title colour and every link as a thin line, batched by colour.

    The batches are built once and reused until the graph or the selection changes.
    """
    if scene.overview_cache is None:
        scene.overview_cache = _batches(scene)
    links, boxes, selected = scene.overview_cache
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    for pen, path in links:
        painter.setPen(pen)
        painter.drawPath(path)
    painter.setPen(Qt.PenStyle.NoPen)
    for brush, rects in boxes:
        painter.setBrush(brush)
        painter.drawRects(rects)
    if selected:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(theme.SELECTED, 0))
        painter.drawRects(selected)
    painter.restore()


def _batches(scene: GraphScene):
    links: dict[int, tuple[QPen, QPainterPath]] = {}
    for item in scene.edges.values():
        entry = links.setdefault(item.colour.rgba(), (QPen(item.colour, 0), QPainterPath()))
        entry[1].addPath(item.path)
    boxes: dict[int, tuple[QBrush, list[QRectF]]] = {}
    selected: list[QRectF] = []
    for item in scene.nodes.values():
        rect = item.rect().translated(item.pos())
        boxes.setdefault(item.box_colour.rgba(), (QBrush(item.box_colour), []))[1].append(rect)
        if item.isSelected():
            selected.append(rect)
    return list(links.values()), list(boxes.values()), selected
