"""Which torch device and dtypes a run uses.

CUDA: the family's half precision for the denoiser and text encoders (fp16 for SD1.x/SD2/SDXL, bf16 for
SD3 and Flux, which overflow in fp16), fp32 VAE (the upcast diffusers does for SD VAEs, which overflow in
fp16). CPU and MPS: fp32 everywhere. `ctx.device` ("auto", "cpu", "cuda", "cuda:N", "mps") picks the device; "auto"
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
    denoiser: str
    text_encoder: str
    vae: str


FP32 = Precision("fp32", "float32", "float32", "float32")
FP16 = Precision("fp16", "float16", "float16", "float32")
BF16 = Precision("bf16", "bfloat16", "bfloat16", "float32")


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


def precision_for(device: Any, half: str = "float16") -> Precision:
    """`half` (a family's `cuda_dtype`: float16 or bfloat16) on CUDA with an fp32 VAE, fp32 elsewhere."""
    if getattr(device, "type", str(device)) != "cuda":
        return FP32
    return BF16 if half == "bfloat16" else FP16


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
