"""Nodeloom: a node-graph diffusion app (PySide6 editor + headless runner).

Importing the package sets the Hugging Face libraries offline by default: Nodeloom never downloads
weights. Nothing heavy (torch, Qt) is imported here.
"""

import os

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
