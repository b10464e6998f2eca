"""Turning node outputs into files and back, without pickle: JSON + safetensors + PNG.

Persistable values: JSON scalars, lists, tuples, dicts with text keys, numpy arrays, torch tensors,
and dataclasses registered with `@persistable` (rebuilt by registered name, never by import path).
8-bit images (uint8 arrays shaped HxWx{3,4} or BxHxWx{3,4}) are stored as PNG, losslessly; float
arrays go to safetensors so a disk hit is bit-identical to a fresh run. Anything else (models,
open handles) raises NotPersistable and simply stays out of the disk cache.

torch is only touched when a value already is a torch tensor (so torch is already imported).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import numpy as st_numpy

_PERSISTABLE: dict[str, type] = {}


class NotPersistable(TypeError):
    """The value has no file form (a model, a handle): keep it in memory only."""


def persistable(cls: type) -> type:
    """Register a dataclass whose instances may be written to the disk cache."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass to be persistable")
    _PERSISTABLE[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_png_image(value: np.ndarray) -> bool:
    return value.dtype == np.uint8 and value.ndim in (3, 4) and value.shape[-1] in (3, 4)


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, Any] = {}
        self.pngs: dict[str, np.ndarray] = {}

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, np.ndarray):
            name = f"a{len(self.arrays) + len(self.pngs)}"
            if _is_png_image(value):
                self.pngs[name] = value
                return {"t": "png", "k": name, "batched": value.ndim == 4}
            self.arrays[name] = np.ascontiguousarray(value)
            return {"t": "ndarray", "k": name}
        if _is_tensor(value):
            name = f"t{len(self.tensors)}"
            self.tensors[name] = value.detach().to("cpu").contiguous().clone()
            return {"t": "tensor", "k": name}
        if isinstance(value, (list, tuple)):
            return {"t": "list" if isinstance(value, list) else "tuple", "v": [self.encode(v) for v in value]}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise NotPersistable("dict keys must be text")
            return {"t": "dict", "v": {k: self.encode(v) for k, v in value.items()}}
        name = f"{type(value).__module__}.{type(value).__qualname__}"
        if name in _PERSISTABLE and dataclasses.is_dataclass(value):
            fields = {f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return {"t": "dc", "name": name, "v": fields}
        raise NotPersistable(f"{type(value).__name__} values are not written to the disk cache")


def write(folder: Path, value: Any) -> Any:
    """Write `value`'s arrays into `folder`; returns the JSON skeleton that `read` needs."""
    import cv2  # local: only the disk cache needs opencv here

    writer = _Writer()
    skeleton = writer.encode(value)
    if writer.arrays:
        (folder / "arrays.safetensors").write_bytes(st_numpy.save(writer.arrays))
    if writer.tensors:
        from safetensors import torch as st_torch

        (folder / "tensors.safetensors").write_bytes(st_torch.save(writer.tensors))
    for name, image in writer.pngs.items():
        frames = image if image.ndim == 4 else image[None]
        for index, frame in enumerate(frames):
            code = cv2.COLOR_RGBA2BGRA if frame.shape[-1] == 4 else cv2.COLOR_RGB2BGR
            ok, data = cv2.imencode(".png", cv2.cvtColor(frame, code))
            if not ok:
                raise NotPersistable("PNG encoding failed")
            (folder / f"{name}_{index}.png").write_bytes(data.tobytes())
    return skeleton


def read(folder: Path, skeleton: Any) -> Any:
    """Rebuild a value written by `write`."""
    arrays: dict[str, np.ndarray] = {}
    tensors: dict[str, Any] = {}
    if (folder / "arrays.safetensors").exists():
        arrays = st_numpy.load((folder / "arrays.safetensors").read_bytes())
    if (folder / "tensors.safetensors").exists():
        from safetensors import torch as st_torch

        tensors = st_torch.load((folder / "tensors.safetensors").read_bytes())
    return _decode(folder, skeleton, arrays, tensors)


def _decode(folder: Path, node: Any, arrays: dict, tensors: dict) -> Any:
    if not isinstance(node, dict):
        return node
    kind = node["t"]
    if kind == "ndarray":
        return arrays[node["k"]]
    if kind == "tensor":
        return tensors[node["k"]]
    if kind == "png":
        return _read_pngs(folder, node["k"], node["batched"])
    if kind in ("list", "tuple"):
        items = [_decode(folder, v, arrays, tensors) for v in node["v"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: _decode(folder, v, arrays, tensors) for k, v in node["v"].items()}
    if kind == "dc":
        cls = _PERSISTABLE.get(node["name"])
        if cls is None:
            raise NotPersistable(f"unknown cached type {node['name']}")
        return cls(**{k: _decode(folder, v, arrays, tensors) for k, v in node["v"].items()})
    raise NotPersistable(f"unknown cached value kind {kind!r}")


def _read_pngs(folder: Path, name: str, batched: bool) -> np.ndarray:
    import cv2

    frames = []
    for path in sorted(folder.glob(f"{name}_*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
        frame = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
        code = cv2.COLOR_BGRA2RGBA if frame.shape[-1] == 4 else cv2.COLOR_BGR2RGB
        frames.append(cv2.cvtColor(frame, code))
    return np.stack(frames) if batched else frames[0]


def nbytes(value: Any) -> int:
    """Approximate memory held by a value (arrays and tensors by their byte size)."""
    size = getattr(value, "nbytes", None)
    if isinstance(size, int):
        return size
    if isinstance(value, (list, tuple)):
        return 64 + sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return 64 + sum(nbytes(v) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return 64 + sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (str, bytes)):
        return 49 + len(value)
    return 64
