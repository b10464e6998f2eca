"""Other tools' graph formats: ComfyUI workflows in (UI and API formats, PNGs) and out (API format).
Pure Python: never import torch or Qt here."""
