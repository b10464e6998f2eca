"""Real-ESRGAN's SRVGGNetCompact (realesr-general-x4v3, realesr-animevideov3 and the other "compact" models):
a plain stack of 3x3 convolutions with PReLU (or ReLU / LeakyReLU, which carry no weights), a pixel shuffle,
and the nearest-upscaled input added back. Sizes and scale come from the tensors' shapes. torch is imported
inside functions; never import Qt here."""

from __future__ import annotations

import math
from typing import Any

NAME = "Real-ESRGAN compact (SRVGGNetCompact)"


def matches(tensors: dict[str, Any]) -> bool:
    return "body.0.weight" in tensors and "conv_first.weight" not in tensors and _convs(tensors) != []


def _convs(tensors: dict[str, Any]) -> list[int]:
    """The body indices holding 3x3 convolutions, in order."""
    return sorted(
        int(k.split(".")[1])
        for k, v in tensors.items()
        if k.startswith("body.") and k.endswith(".weight") and getattr(v, "ndim", 0) == 4
    )


def build(tensors: dict[str, Any]) -> tuple[Any, int]:
    """(module with the weights loaded, scale)."""
    import torch
    from torch import nn

    convs = _convs(tensors)
    first, last = tensors[f"body.{convs[0]}.weight"], tensors[f"body.{convs[-1]}.weight"]
    in_channels, features = first.shape[1], first.shape[0]
    scale = math.isqrt(last.shape[0] // in_channels)
    if scale * scale * in_channels != last.shape[0]:
        raise ValueError(f"a last layer of {last.shape[0]} channels is no pixel shuffle of {in_channels}")
    prelu = f"body.{convs[0] + 1}.weight" in tensors
    if not prelu and convs[1] - convs[0] != 2:
        raise ValueError("the layers between the convolutions are not activations")
    layers: list[nn.Module] = []
    for i, index in enumerate(convs):
        cin = in_channels if i == 0 else features
        cout = last.shape[0] if index == convs[-1] else features
        layers.append(nn.Conv2d(cin, cout, 3, 1, 1))
        if index != convs[-1]:
            layers.append(nn.PReLU(num_parameters=features) if prelu else nn.LeakyReLU(0.1))

    class Compact(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = nn.functional.pixel_shuffle(self.body(x), scale)
            return out + nn.functional.interpolate(x, scale_factor=scale, mode="nearest")

    module = Compact()
    module.load_state_dict(tensors, strict=True)
    return module, scale
