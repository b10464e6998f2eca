"""Upscale models (models/upscale_models): ESRGAN-family RRDBNets, Real-ESRGAN's compact networks and SwinIR, read
from .safetensors or .pth (torch.load with weights_only), recognised by their tensor names and sized by their
shapes; one module per architecture (esrgan.py, compact.py, swinir.py), tiled running in tiles.py.

Adding an architecture: a module with NAME, matches(tensors) and build(tensors) -> (module, scale), listed
in ARCHITECTURES. torch is imported inside functions; never import Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.runtime import weights
from app.runtime.upscalers import compact, esrgan, swinir
from app.runtime.values import CheckpointSource

ARCHITECTURES = (esrgan, compact, swinir)


class UpscalerProblem(ValueError):
    """An upscale model file that cannot be read or is no architecture we know; the message names it."""


@dataclass(frozen=True)
class UpscaleModelHandle:
    """UPSCALE_MODEL: which file, its architecture's name and its scale (output pixels per input pixel)."""

    source: CheckpointSource
    architecture: str
    scale: int


def read(path: Path) -> tuple[Any, str, int]:
    """(module, architecture name, scale) of the upscale model at `path`, on the CPU in float32."""
    tensors, _ = weights.read_state_dict(path, UpscalerProblem)
    for key in ("params_ema", "params", "state_dict"):  # BasicSR and Lightning wrappers
        if isinstance(tensors.get(key), dict):
            tensors = tensors[key]
    tensors = {k.removeprefix("module."): v for k, v in tensors.items() if hasattr(v, "shape")}
    for arch in ARCHITECTURES:
        if arch.matches(tensors):
            try:
                module, scale = arch.build(esrgan.to_basicsr(tensors) if arch is esrgan else tensors)
            except (KeyError, ValueError, RuntimeError) as error:
                raise UpscalerProblem(
                    f"{path.name}: looks like {arch.NAME} but does not fit it ({error})"
                ) from None
            return module.float().eval().requires_grad_(False), arch.NAME, scale
    names = ", ".join(a.NAME for a in ARCHITECTURES)
    raise UpscalerProblem(
        f"{path.name}: not an upscale model this version reads ({names}; HAT, DAT, OmniSR: not yet)"
    )
