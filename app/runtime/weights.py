"""Reading a file of tensors without running code: .safetensors, or .pt/.pth/.ckpt/.bin through
torch.load(weights_only=True). Shared by LoRAs, embeddings and upscale models. Never import Qt here."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class WeightsProblem(ValueError):
    """A weights file that cannot be read; the message names the file."""


def read_state_dict(
    path: Path, problem: type[ValueError] = WeightsProblem
) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and metadata of `path` (never unpickles code); an unreadable file raises `problem`."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or refused file is the user's file problem
        raise problem(f"{path.name}: cannot read it ({type(error).__name__}: {error})") from None
    if not isinstance(loaded, dict):
        raise problem(f"{path.name}: holds a {type(loaded).__name__}, not a dict of tensors")
    return loaded, {}
