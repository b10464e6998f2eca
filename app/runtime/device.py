"""Which torch device and dtypes a run uses.

CUDA: the family's half precision for the denoiser and text encoders (fp16 for SD1.x/SD2/SDXL, bf16 for
SD3 and Flux, which overflow in fp16), fp32 VAE (the upcast diffusers does for SD VAEs, which overflow in
fp16). CPU and MPS: fp32 everywhere. `ctx.device` ("auto", "cpu", "cuda", "cuda:N", "mps") picks the device; "auto"
takes CUDA when it is available. torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from app.engine.context import NodeError
from app.engine.resources import EFFICIENCY, Capacity


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


def capacity(device: str) -> Capacity:
    """Free memory and a matrix-product rate of the device a run on `device` uses, for the run estimate
    (app/engine/resources.py; the CLI and the worker hand this to their Executor)."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        name = f"CUDA {torch.cuda.get_device_name(index)}"
        return Capacity(name, int(free), _rate(torch, torch.device("cuda", index), torch.float16), 2)
    threads = torch.get_num_threads()
    label = f"cpu ({threads} thread{'s' if threads > 1 else ''})"
    return Capacity(label, _free_ram(), _rate(torch, torch.device("cpu"), torch.float32), 4)


_RATES: dict[tuple[str, str, int], float] = {}


def _rate(torch: Any, device: Any, dtype: Any) -> float:
    """FLOP/s of a square matrix product on the device (measured once per process), times EFFICIENCY."""
    key = (str(device), str(dtype), torch.get_num_threads())
    if key not in _RATES:
        size = 2048 if device.type == "cuda" else 384
        a = torch.randn(size, size, device=device, dtype=dtype)
        (a @ a).sum().item()  # warm-up
        start = time.perf_counter()
        for _ in range(4):
            b = a @ a
        b.sum().item()
        _RATES[key] = EFFICIENCY * 4 * 2 * size**3 / max(time.perf_counter() - start, 1e-9)
    return _RATES[key]


def _free_ram() -> int:
    """MemAvailable (Linux), else the free physical pages."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 1 << 40  # unknown: do not refuse
