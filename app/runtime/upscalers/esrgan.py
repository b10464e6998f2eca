"""ESRGAN's RRDBNet (Wang et al. 2018) as ESRGAN, BSRGAN and Real-ESRGAN ship it, in both key layouts:
the original repository's (`model.0`, `model.1.sub.N.RDB1.conv1.0`, ...) and BasicSR's (`conv_first`,
`body.N.rdb1.conv1`, ...). Real-ESRGAN's x2 and x1 models fold the picture into channels first
(pixel_unshuffle by 2 or 4: 12 or 48 input channels). Sizes (features, blocks, growth, scale) come from the
tensors' shapes. torch is imported inside functions; never import Qt here."""

from __future__ import annotations

import re
from typing import Any

NAME = "ESRGAN (RRDBNet)"
_OLD_BODY = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_LAYER = re.compile(r"model\.(\d+)\.(weight|bias)$")


def matches(tensors: dict[str, Any]) -> bool:
    return (
        "conv_first.weight" in tensors
        and "body.0.rdb1.conv1.weight" in tensors
        or ("model.0.weight" in tensors and "model.1.sub.0.RDB1.conv1.0.weight" in tensors)
    )


def to_basicsr(tensors: dict[str, Any]) -> dict[str, Any]:
    """The original ESRGAN layout renamed to BasicSR's (a BasicSR state dict is returned as it is)."""
    if "conv_first.weight" in tensors:
        return dict(tensors)
    out: dict[str, Any] = {}
    blocks = 1 + max(int(m.group(1)) for k in tensors if (m := _OLD_BODY.match(k)))
    layers = sorted({int(m.group(1)) for k in tensors if (m := _OLD_LAYER.match(k))} - {0})
    *ups, hr, last = layers  # model.3, model.6 ... are the upsampling convs; then HR conv and the last conv
    names = {0: "conv_first", hr: "conv_hr", last: "conv_last"}
    names.update({index: f"conv_up{i + 1}" for i, index in enumerate(ups)})
    for key, value in tensors.items():
        if m := _OLD_BODY.match(key):
            block, rdb, conv, kind = m.groups()
            out[f"body.{block}.rdb{rdb}.conv{conv}.{kind}"] = value
        elif key.startswith(f"model.1.sub.{blocks}."):
            out["conv_body." + key.rsplit(".", 1)[1]] = value
        elif m := _OLD_LAYER.match(key):
            out[f"{names[int(m.group(1))]}.{m.group(2)}"] = value
    return out


def build(tensors: dict[str, Any]) -> tuple[Any, int]:
    """(module with the weights loaded, scale) for a BasicSR-layout state dict."""
    import torch
    from torch import nn

    features = tensors["conv_first.weight"].shape[0]
    in_channels = tensors["conv_first.weight"].shape[1]
    growth = tensors["body.0.rdb1.conv1.weight"].shape[0]
    blocks = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("body."))
    ups = sum(1 for k in tensors if re.fullmatch(r"conv_up\d+\.weight", k))
    out_channels = tensors["conv_last.weight"].shape[0]
    fold = {out_channels: 1, out_channels * 4: 2, out_channels * 16: 4}.get(in_channels)
    if fold is None:
        raise ValueError(f"{in_channels} input channels for {out_channels} output channels is not an RRDBNet")

    def conv(cin: int, cout: int) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, 3, 1, 1)

    class Dense(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for i in range(1, 5):
                self.add_module(f"conv{i}", conv(features + (i - 1) * growth, growth))
            self.conv5 = conv(features + 4 * growth, features)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen = [x]
            for i in range(1, 5):
                seen.append(_lrelu(getattr(self, f"conv{i}")(torch.cat(seen, 1))))
            return self.conv5(torch.cat(seen, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = Dense(), Dense(), Dense()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_first = conv(in_channels, features)
            self.body = nn.Sequential(*[RRDB() for _ in range(blocks)])
            self.conv_body = conv(features, features)
            for i in range(1, ups + 1):
                self.add_module(f"conv_up{i}", conv(features, features))
            self.conv_hr = conv(features, features)
            self.conv_last = conv(features, out_channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if fold > 1:
                x = nn.functional.pixel_unshuffle(x, fold)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            for i in range(1, ups + 1):
                up = nn.functional.interpolate(feat, scale_factor=2, mode="nearest")
                feat = _lrelu(getattr(self, f"conv_up{i}")(up))
            return self.conv_last(_lrelu(self.conv_hr(feat)))

    module = RRDBNet()
    module.load_state_dict(tensors, strict=True)
    return module, 2**ups // fold


def _lrelu(x: Any) -> Any:
    import torch

    return torch.nn.functional.leaky_relu(x, 0.2)
