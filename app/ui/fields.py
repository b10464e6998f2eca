"""Inspector field pieces: the gesture token that makes one slider drag or typing burst one undo step, the
focus-out filter that ends a typing gesture, and the number field (spin box plus slider). Imports Qt only."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QSlider, QSpinBox, QWidget

from app.graph import types as T
from app.graph.spec import ParamSpec

SLIDER_STEPS = 1000


class Gesture:
    """A token shared by the edits of one gesture; `end()` starts a new one."""

    def __init__(self) -> None:
        self.token = object()

    def end(self) -> None:
        self.token = object()


def number_field(param: ParamSpec, value: Any, set_value, widgets: dict[str, QWidget]) -> QWidget:
    """A spin box, with a slider beside it when the param is bounded; a slider drag and a typing burst are
    one gesture each (one undo step). `set_value(value, token)`; the widgets go into `widgets`."""
    is_int = param.type == T.INT
    spin = QSpinBox() if is_int else QDoubleSpinBox()
    low = param.min if param.min is not None else (-(2**31) + 1 if is_int else -1e9)
    high = param.max if param.max is not None else (2**31 - 1 if is_int else 1e9)
    if not is_int:
        spin.setDecimals(4)
        spin.setSingleStep(param.step or 0.1)
    elif param.step:
        spin.setSingleStep(int(param.step))
    spin.setRange(int(low) if is_int else float(low), int(high) if is_int else float(high))
    spin.setValue(value)
    typing = Gesture()
    spin.valueChanged.connect(lambda v: set_value(v, typing.token))
    spin.editingFinished.connect(typing.end)
    widgets[param.name] = spin
    if param.min is None or param.max is None:
        return spin
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, SLIDER_STEPS)
    span = (high - low) or 1.0
    slider.setValue(round((value - low) / span * SLIDER_STEPS))
    drag = Gesture()

    def slid(position: int) -> None:
        raw = low + span * position / SLIDER_STEPS
        if param.step:
            raw = low + round((raw - low) / param.step) * param.step
        new = int(round(raw)) if is_int else round(float(raw), 6)
        spin.blockSignals(True)
        spin.setValue(new)
        spin.blockSignals(False)
        set_value(new, drag.token)

    slider.valueChanged.connect(slid)
    slider.sliderReleased.connect(drag.end)
    widgets[f"{param.name}@slider"] = slider
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(slider, 2)
    row.addWidget(spin, 1)
    return box


class FocusOut(QObject):
    """Ends a typing gesture when a text box loses focus."""

    def __init__(self, parent: QObject, callback) -> None:
        super().__init__(parent)
        self.callback = callback

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusOut:
            self.callback()
        return False
