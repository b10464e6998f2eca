"""Editor colours, sizes and the bundled font (so screenshots look the same on every machine).

Socket colours come from app.graph.types.COLOURS. Imports Qt only; never torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtGui import QColor, QFont, QFontDatabase

from app.graph import types as T

FONTS = Path(__file__).resolve().parents[2] / "assets" / "fonts"
FONT_FAMILY = "DejaVu Sans"

BACKGROUND = QColor("#1e1f22")
GRID_MINOR = QColor("#26282c")
GRID_MAJOR = QColor("#2f3237")
NODE_BODY = QColor("#2b2d31")
NODE_BORDER = QColor("#121315")
SELECTED = QColor("#ffb74d")
TEXT = QColor("#e8e8e8")
TEXT_DIM = QColor("#9a9ea6")
VALUE_TEXT = QColor("#c8d6e5")
BYPASS = QColor("#7e57c2")
MUTE = QColor("#616161")
UNKNOWN = QColor("#c62828")
KNIFE = QColor("#ff5252")

# Category colours for title bars; other categories get a stable colour from their name.
CATEGORY_COLOURS: dict[str, str] = {
    "image": "#3d6f9e",
    "values": "#5a6b3b",
    "loaders": "#6a4f8c",
    "sampling": "#8c4f4f",
    "conditioning": "#8c6d3f",
    "latent": "#8c4f72",
    "test": "#4f5b66",
}
_SPARE = ("#3f7a6e", "#7a5a3f", "#5a3f7a", "#3f5a7a", "#7a3f5a", "#5f7a3f")

SCALAR_TYPES = frozenset({T.INT, T.FLOAT, T.STRING, T.BOOL, T.SEED})
HANDLE_TYPES = frozenset({T.MODEL, T.CLIP, T.VAE, T.CONTROL_NET, T.UPSCALE_MODEL})


def category_colour(category: str) -> QColor:
    if category in CATEGORY_COLOURS:
        return QColor(CATEGORY_COLOURS[category])
    digest = hashlib.sha1(category.encode()).digest()[0]
    return QColor(_SPARE[digest % len(_SPARE)])


def socket_colour(socket_type: str) -> QColor:
    return QColor(T.COLOURS.get(socket_type, T.COLOURS[T.ANY]))


def socket_shape(socket_type: str) -> str:
    """circle for data, diamond for plain values, square for model handles."""
    if socket_type in SCALAR_TYPES:
        return "diamond"
    if socket_type in HANDLE_TYPES:
        return "square"
    return "circle"


def load_fonts() -> None:
    """Register the bundled DejaVu fonts (call once after the QApplication exists)."""
    for path in sorted(FONTS.glob("*.ttf")):
        QFontDatabase.addApplicationFont(str(path))


def ui_font(pixels: int = 12, bold: bool = False) -> QFont:
    """A canvas font sized in pixels, so the canvas looks the same at any screen DPI."""
    font = QFont(FONT_FAMILY)
    font.setPixelSize(pixels)
    font.setBold(bold)
    font.setHintingPreference(QFont.HintingPreference.PreferNoHinting)
    return font
