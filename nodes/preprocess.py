"""ControlNet preprocessors with opencv and no weights: canny, threshold (scribble), soft edges, blur
(tile), colour palette (k-means) and an inpaint control from an alpha mask.

Every node takes an IMAGE and gives an IMAGE (RGB 0..1) sized the way ControlNet users expect: to the
`width` x `height` given (0 keeps the input's size), or to 8x the size of a connected LATENT, with
`fit` = crop (fill and centre-crop, keeping aspect), pad (fit inside, keeping aspect) or stretch.
"""

from __future__ import annotations

import cv2
import numpy as np

from app import images
from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Input, Output, Param, node

_SIZE_PARAMS = (
    Param(
        "width",
        T.INT,
        0,
        min=0,
        max=8192,
        step=8,
        description="Output width in pixels; 0 keeps the input's (or the latent's x 8).",
    ),
    Param(
        "height",
        T.INT,
        0,
        min=0,
        max=8192,
        step=8,
        description="Output height in pixels; 0 keeps the input's (or the latent's x 8).",
    ),
    Param(
        "fit",
        T.STRING,
        "crop",
        choices=images.FIT_MODES,
        description="crop: fill then centre-crop; pad: fit inside; stretch: ignore aspect.",
    ),
)
_INPUTS = (
    Input("image", T.IMAGE, "The image to turn into a control image."),
    Input(
        "latent",
        T.LATENT,
        "Optional: size the result to this latent's image size.",
        optional=True,
    ),
)
_OUTPUT = (Output("image", T.IMAGE, "The control image, RGB 0..1."),)


def _size(frame: np.ndarray, width: int, height: int, latent) -> tuple[int, int]:
    if latent is not None and not (width and height):
        samples, factor = getattr(latent, "samples", latent), getattr(latent, "pixels_per_latent", 8)
        lat_h, lat_w = (int(v) for v in samples.shape[-2:])
        return width or lat_w * factor, height or lat_h * factor
    return width or frame.shape[1], height or frame.shape[0]


def _each(image: np.ndarray, width: int, height: int, fit: str, latent, fn) -> np.ndarray:
    """Resize every frame, apply `fn` (HxWx3 uint8 -> HxW or HxWx3 uint8), return an IMAGE batch."""
    if not isinstance(image, np.ndarray) or image.ndim != 4:
        raise NodeError(f"expected an IMAGE batch (B, H, W, 3), got {getattr(image, 'shape', type(image))}")
    out = []
    for frame in image:
        target_w, target_h = _size(frame, width, height, latent)
        result = fn(images.to_uint8(images.fit(frame, target_w, target_h, fit)))
        if result.ndim == 2:
            result = np.repeat(result[..., None], 3, axis=-1)
        out.append(images.from_uint8(result))
    return np.stack(out)


def _gray(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


@node(
    "control.canny",
    title="Canny Edges",
    category="controlnet",
    inputs=_INPUTS,
    outputs=_OUTPUT,
    params=(
        Param(
            "low",
            T.INT,
            100,
            min=0,
            max=1000,
            description="Lower hysteresis threshold: weaker edges linked to strong ones are kept.",
        ),
        Param(
            "high",
            T.INT,
            200,
            min=0,
            max=1000,
            description="Upper hysteresis threshold: gradients above it always count as edges.",
        ),
        *_SIZE_PARAMS,
    ),
)
def canny(ctx, image, latent, low, high, width, height, fit):
    """White edges on black (cv2.Canny), the control for canny ControlNets."""
    if low > high:
        raise NodeError(f"low threshold {low} is above the high threshold {high}")
    return {"image": _each(image, width, height, fit, latent, lambda px: cv2.Canny(_gray(px), low, high))}


@node(
    "control.threshold",
    title="Threshold (Scribble)",
    category="controlnet",
    inputs=_INPUTS,
    outputs=_OUTPUT,
    params=(
        Param(
            "threshold", T.INT, 128, min=0, max=255, description="Grey level that separates lines from paper."
        ),
        Param(
            "invert",
            T.BOOL,
            True,
            description="Dark lines on light paper become white lines on black (what scribble ControlNets expect).",
        ),
        *_SIZE_PARAMS,
    ),
)
def threshold(ctx, image, latent, threshold, invert, width, height, fit):
    """A two-level image: turns a drawing or scribble into a clean control."""
    mode = cv2.THRESH_BINARY_INV if invert else cv2.THRESH_BINARY
    return {
        "image": _each(
            image, width, height, fit, latent, lambda px: cv2.threshold(_gray(px), threshold, 255, mode)[1]
        )
    }


@node(
    "control.soft_edge",
    title="Soft Edges",
    category="controlnet",
    inputs=_INPUTS,
    outputs=_OUTPUT,
    params=(
        Param(
            "method",
            T.STRING,
            "sobel",
            choices=("sobel", "laplacian"),
            description="Gradient magnitude (Sobel) or second derivative (Laplacian).",
        ),
        Param(
            "blur",
            T.FLOAT,
            1.0,
            min=0.0,
            max=10.0,
            step=0.1,
            description="Gaussian blur (sigma, pixels) before the gradient, to soften noise.",
        ),
        *_SIZE_PARAMS,
    ),
)
def soft_edge(ctx, image, latent, method, blur, width, height, fit):
    """Grey-level edge strength, normalised to 0..1: a weight-free stand-in for HED/PiDiNet soft edges."""

    def edges(px: np.ndarray) -> np.ndarray:
        gray = _gray(px).astype(np.float32) / 255.0
        if blur > 0:
            gray = cv2.GaussianBlur(gray, (0, 0), blur)
        if method == "sobel":
            magnitude = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        else:
            magnitude = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
        peak = float(magnitude.max())
        return images.to_uint8(magnitude / peak if peak > 0 else magnitude)

    return {"image": _each(image, width, height, fit, latent, edges)}


@node(
    "control.blur",
    title="Blur (Tile)",
    category="controlnet",
    inputs=_INPUTS,
    outputs=_OUTPUT,
    params=(
        Param(
            "sigma",
            T.FLOAT,
            3.0,
            min=0.0,
            max=50.0,
            step=0.1,
            description="Gaussian blur radius (sigma, pixels).",
        ),
        Param(
            "downscale",
            T.INT,
            1,
            min=1,
            max=32,
            description="Shrink by this factor and scale back up first (tile ControlNets like a coarse image).",
        ),
        *_SIZE_PARAMS,
    ),
)
def blur(ctx, image, latent, sigma, downscale, width, height, fit):
    """A blurred, optionally coarsened copy: the control for tile / blur ControlNets."""

    def soften(px: np.ndarray) -> np.ndarray:
        h, w = px.shape[:2]
        if downscale > 1:
            small = cv2.resize(
                px, (max(1, w // downscale), max(1, h // downscale)), interpolation=cv2.INTER_AREA
            )
            px = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        return cv2.GaussianBlur(px, (0, 0), sigma) if sigma > 0 else px

    return {"image": _each(image, width, height, fit, latent, soften)}


@node(
    "control.palette",
    title="Colour Palette",
    category="controlnet",
    inputs=_INPUTS,
    outputs=_OUTPUT,
    params=(
        Param("colours", T.INT, 6, min=2, max=64, description="How many colours to keep (k-means clusters)."),
        Param(
            "cell",
            T.INT,
            8,
            min=1,
            max=256,
            description="Pixelate into cells of this size first (1 keeps full detail).",
        ),
        *_SIZE_PARAMS,
    ),
)
def palette(ctx, image, latent, colours, cell, width, height, fit):
    """The image reduced to a few colours (seeded k-means), optionally in coarse cells: a colour layout control."""

    def quantise(px: np.ndarray) -> np.ndarray:
        h, w = px.shape[:2]
        if cell > 1:
            small = cv2.resize(px, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
        else:
            small = px
        samples = small.reshape(-1, 3).astype(np.float32)
        k = min(colours, len(np.unique(samples, axis=0)))
        cv2.setRNGSeed(0)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, labels, centres = cv2.kmeans(samples, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
        quantised = centres[labels.ravel()].reshape(small.shape).round().astype(np.uint8)
        return cv2.resize(quantised, (w, h), interpolation=cv2.INTER_NEAREST) if cell > 1 else quantised

    return {"image": _each(image, width, height, fit, latent, quantise)}


@node(
    "control.inpaint",
    title="Inpaint Control",
    category="controlnet",
    inputs=(
        Input("image", T.IMAGE, "The picture to repaint part of."),
        Input("mask", T.MASK, "Alpha from Load Image: transparent (0) parts are repainted."),
    ),
    outputs=(
        Output(
            "image",
            T.IMAGE,
            "The control: the image with the area to repaint set to -1 (what inpaint ControlNets read).",
        ),
        Output("mask", T.MASK, "1 where to repaint."),
    ),
    params=(
        Param(
            "invert", T.BOOL, False, description="Repaint the opaque part instead of the transparent part."
        ),
        Param("grow", T.INT, 0, min=0, max=256, description="Dilate the repaint area by this many pixels."),
    ),
)
def inpaint(ctx, image, mask, invert, grow):
    """Builds the inpaint ControlNet's control from an image with an alpha channel."""
    if image.shape[:3] != mask.shape[:3]:
        raise NodeError(f"image {image.shape[1:3]} and mask {mask.shape[1:3]} sizes differ")
    repaint = (mask > 0.5) if invert else (mask < 0.5)
    if grow:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        repaint = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in repaint])
    control = np.where(repaint[..., None], np.float32(-1.0), image).astype(np.float32)
    return {"image": control, "mask": repaint.astype(np.float32)}
