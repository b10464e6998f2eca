"""Procedural shapes: one flat circle, square or triangle on a flat background.

The same drawing makes the embedded model's training data (tools/train_tiny_shapes.py) and control
images for ControlNet tests, so what the model learned can be drawn and checked from a graph.
"""

from __future__ import annotations

import cv2
import numpy as np

from app import images
from app.graph import types as T
from app.graph.spec import Output, Param, node

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 40),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
_SUPERSAMPLE = 4


def shape_points(shape: str, cx: float, cy: float, half: float) -> np.ndarray:
    """Polygon (float pixel coordinates) of a square or an upward triangle centred at (cx, cy)."""
    if shape == "square":
        return np.array(
            [[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half]]
        )
    if shape == "triangle":
        return np.array([[cx, cy - half], [cx + half, cy + half * 0.85], [cx - half, cy + half * 0.85]])
    raise ValueError(f"no polygon for shape {shape!r}")


def draw(
    shape: str,
    colour: tuple[int, int, int],
    background: tuple[int, int, int],
    x: float,
    y: float,
    size: float,
    width: int = 64,
    height: int = 64,
    outline: float = 0.0,
) -> np.ndarray:
    """An anti-aliased HxWx3 uint8 image. x, y: centre as fractions; size: half-extent as a fraction of
    min(W, H); outline > 0 draws only the edge, that thick (as a fraction of min(W, H)), instead of filling."""
    big_w, big_h = width * _SUPERSAMPLE, height * _SUPERSAMPLE
    canvas = np.empty((big_h, big_w, 3), np.uint8)
    canvas[:] = background
    cx, cy, half = x * big_w, y * big_h, size * min(big_w, big_h)
    thickness = max(1, int(round(outline * min(big_w, big_h)))) if outline > 0 else -1
    if shape == "circle":
        radius = int(round(half - max(thickness, 0) / 2))
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), radius, colour, thickness, cv2.LINE_AA)
    else:
        points = np.round(shape_points(shape, cx, cy, half)).astype(np.int32)
        if thickness > 0:
            cv2.polylines(canvas, [points], True, colour, thickness, cv2.LINE_AA)
        else:
            cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA)
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)


@node(
    "shapes.draw",
    title="Draw Shape",
    category="image",
    outputs=[Output("image", T.IMAGE, "The drawing, RGB 0..1, batch of one.")],
    params=[
        Param("shape", T.STRING, "circle", choices=SHAPES, description="Which shape to draw."),
        Param("colour", T.STRING, "red", choices=tuple(COLOURS), description="Colour of the shape."),
        Param(
            "background", T.STRING, "blue", choices=tuple(COLOURS), description="Colour of the background."
        ),
        Param(
            "x",
            T.FLOAT,
            0.5,
            min=0.0,
            max=1.0,
            step=0.01,
            linkable=True,
            description="Centre, as a fraction of the width.",
        ),
        Param(
            "y",
            T.FLOAT,
            0.5,
            min=0.0,
            max=1.0,
            step=0.01,
            linkable=True,
            description="Centre, as a fraction of the height.",
        ),
        Param(
            "size",
            T.FLOAT,
            0.25,
            min=0.02,
            max=0.5,
            step=0.01,
            linkable=True,
            description="Half-extent, as a fraction of the smaller side.",
        ),
        Param("width", T.INT, 64, min=8, max=4096, step=8, description="Image width in pixels."),
        Param("height", T.INT, 64, min=8, max=4096, step=8, description="Image height in pixels."),
    ],
)
def draw_shape(ctx, shape, colour, background, x, y, size, width, height):
    """Draws one flat shape on a flat background: the embedded model's world, as an image."""
    pixels = draw(shape, COLOURS[colour], COLOURS[background], x, y, size, width, height)
    return {"image": images.from_uint8(pixels)[None]}
