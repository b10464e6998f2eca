"""Which torch device and dtypes a run uses.

CUDA: fp16 UNet and text encoder, fp32 VAE (the upcast diffusers does for SD VAEs, which overflow in fp16).
CPU and MPS: fp32 everywhere. `ctx.device` ("auto", "cpu", "cuda", "cuda:N", "mps") picks the device; "auto"
takes CUDA when it is available. torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.engine.context import NodeError


@dataclass(frozen=True)
class Precision:
    """dtype names per component; `name` keys loaded weights in the model manager."""

    name: str
    unet: str
    text_encoder: str
    vae: str


FP32 = Precision("fp32", "float32", "float32", "float32")
FP16 = Precision("fp16", "float16", "float16", "float32")


def torch_device(name: str) -> Any:
    """The torch.device for a --device value; a device that is not there is a NodeError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NodeError(f"device {name!r} was asked for, but torch sees no CUDA device (use --device cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise NodeError("device 'mps' was asked for, but this torch has no MPS support (use --device cpu)")
    return torch.device(name)


def precision_for(device: Any) -> Precision:
    """fp16 on CUDA (with an fp32 VAE), fp32 elsewhere."""
    return FP16 if getattr(device, "type", str(device)) == "cuda" else FP32


def dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def describe(device_setting: str) -> dict[str, str]:
    """Device and dtypes a run with this setting uses, for manifests (imports torch only if loaded)."""
    import sys

    if "torch" not in sys.modules:
        return {"device": device_setting}
    device = torch_device(device_setting)
    precision = precision_for(device)
    return {"device": str(device), "dtype": precision.name, "vae_dtype": precision.vae}
