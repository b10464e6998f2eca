"""SwinIR (Liang et al. 2021) as its authors ship it: lightweight (pixelshuffledirect, e.g. SwinIR-S x2/x3/x4),
classical (pixelshuffle, SwinIR-M) and real-world (nearest+conv) super-resolution. Residual Swin Transformer
blocks: windowed self-attention with a learned relative position bias, every other block on windows shifted
by half a window (with the mask that keeps the wrapped-around regions apart), an MLP, a convolution per
group. Sizes (width, depths, heads, window, MLP width, upsampler, scale) come from the tensors; the stored
attention masks and position indices are recomputed for each picture's size. torch is imported inside
functions; never import Qt here."""

from __future__ import annotations

import math
import re
from typing import Any

NAME = "SwinIR"
RGB_MEAN = (0.4488, 0.4371, 0.4040)
DROPPED = ("attn_mask", "relative_position_index")  # buffers recomputed here


def matches(tensors: dict[str, Any]) -> bool:
    return "conv_first.weight" in tensors and any(
        k.endswith("attn.relative_position_bias_table") for k in tensors
    )


def _sizes(tensors: dict[str, Any]) -> dict[str, Any]:
    blocks: dict[int, set[int]] = {}
    for key in tensors:
        if m := re.match(r"layers\.(\d+)\.residual_group\.blocks\.(\d+)\.", key):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    layers = sorted(blocks)
    table = tensors["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"]
    window = (math.isqrt(table.shape[0]) + 1) // 2
    embed = tensors["conv_first.weight"].shape[0]
    sizes = {
        "in_channels": tensors["conv_first.weight"].shape[1],
        "embed": embed,
        "depths": [len(blocks[i]) for i in layers],
        "heads": [
            tensors[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1]
            for i in layers
        ],
        "window": window,
        "hidden": tensors["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0],
        "qkv_bias": "layers.0.residual_group.blocks.0.attn.qkv.bias" in tensors,
        "three_convs": "layers.0.conv.0.weight" in tensors,
        "patch_norm": "patch_embed.norm.weight" in tensors,
    }
    if "conv_up1.weight" in tensors:
        sizes["upsampler"], sizes["scale"] = "nearest+conv", 4 if "conv_up2.weight" in tensors else 2
    elif "conv_before_upsample.0.weight" in tensors:
        convs = sorted(int(k.split(".")[1]) for k in tensors if re.fullmatch(r"upsample\.\d+\.weight", k))
        feat = tensors["conv_before_upsample.0.weight"].shape[0]
        grow = tensors[f"upsample.{convs[0]}.weight"].shape[0] // feat
        sizes["upsampler"], sizes["scale"] = "pixelshuffle", 3 if grow == 9 else 2 ** len(convs)
    elif "upsample.0.weight" in tensors:
        out = tensors["upsample.0.weight"].shape[0] // sizes["in_channels"]
        sizes["upsampler"], sizes["scale"] = "pixelshuffledirect", math.isqrt(out)
    else:
        sizes["upsampler"], sizes["scale"] = "", 1
    return sizes


def build(tensors: dict[str, Any]) -> tuple[Any, int]:
    """(module with the weights loaded, scale)."""
    import torch
    from torch import nn

    s = _sizes(tensors)
    embed, window = s["embed"], s["window"]

    def conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, k, 1, k // 2)

    def group_conv() -> nn.Module:
        if not s["three_convs"]:
            return conv(embed, embed)
        lrelu = nn.LeakyReLU(0.2, inplace=True)
        return nn.Sequential(
            conv(embed, embed // 4), lrelu, conv(embed // 4, embed // 4, 1), lrelu, conv(embed // 4, embed)
        )

    class Attention(nn.Module):
        def __init__(self, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
            self.qkv = nn.Linear(embed, embed * 3, bias=s["qkv_bias"])
            self.proj = nn.Linear(embed, embed)
            self.register_buffer("index", relative_index(window), persistent=False)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
            windows, n, c = x.shape
            qkv = self.qkv(x).reshape(windows, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0] * (c // self.heads) ** -0.5, qkv[1], qkv[2]
            attn = q @ k.transpose(-2, -1)
            bias = self.relative_position_bias_table[self.index.view(-1)].view(n, n, -1).permute(2, 0, 1)
            attn = attn + bias.unsqueeze(0)
            if mask is not None:
                count = mask.shape[0]
                attn = attn.view(windows // count, count, self.heads, n, n) + mask[None, :, None]
                attn = attn.view(-1, self.heads, n, n)
            return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(windows, n, c))

    class Block(nn.Module):
        def __init__(self, heads: int, shift: int) -> None:
            super().__init__()
            self.shift = shift
            self.norm1, self.norm2 = nn.LayerNorm(embed), nn.LayerNorm(embed)
            self.attn = Attention(heads)
            self.mlp = nn.Sequential()
            self.mlp.fc1, self.mlp.act, self.mlp.fc2 = (
                nn.Linear(embed, s["hidden"]),
                nn.GELU(),
                nn.Linear(s["hidden"], embed),
            )

        def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
            h, w = size
            b, _, c = x.shape
            y = self.norm1(x).view(b, h, w, c)
            if self.shift:
                y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
            mask = shift_mask(h, w, window, self.shift, x.device) if self.shift else None
            y = unpartition(self.attn(partition(y, window), mask), window, h, w)
            if self.shift:
                y = torch.roll(y, (self.shift, self.shift), (1, 2))
            x = x + y.reshape(b, h * w, c)
            return x + self.mlp(self.norm2(x))

    class Group(nn.Module):  # a residual Swin transformer block (RSTB)
        def __init__(self, depth: int, heads: int) -> None:
            super().__init__()
            self.residual_group = nn.Module()
            self.residual_group.blocks = nn.ModuleList(
                Block(heads, 0 if i % 2 == 0 else window // 2) for i in range(depth)
            )
            self.conv = group_conv()

        def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
            y = x
            for block in self.residual_group.blocks:
                y = block(y, size)
            return tokens(self.conv(image(y, size))) + x

    class SwinIR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            channels = s["in_channels"]
            mean = RGB_MEAN if channels == 3 else (0.0,) * channels
            self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1), persistent=False)
            self.conv_first = conv(channels, embed)
            self.patch_embed = nn.Module()
            self.patch_embed.norm = nn.LayerNorm(embed) if s["patch_norm"] else nn.Identity()
            self.layers = nn.ModuleList(Group(d, h) for d, h in zip(s["depths"], s["heads"], strict=True))
            self.norm = nn.LayerNorm(embed)
            self.conv_after_body = group_conv()
            up, scale = s["upsampler"], s["scale"]
            if up == "pixelshuffledirect":
                self.upsample = nn.Sequential(conv(embed, channels * scale * scale), nn.PixelShuffle(scale))
            elif up in ("pixelshuffle", "nearest+conv"):
                feat = tensors["conv_before_upsample.0.weight"].shape[0]
                self.conv_before_upsample = nn.Sequential(conv(embed, feat), nn.LeakyReLU(inplace=True))
                if up == "pixelshuffle":
                    steps = [(9, 3)] if scale == 3 else [(4, 2)] * int(math.log2(scale))
                    layers: list[nn.Module] = []
                    for grow, factor in steps:
                        layers += [conv(feat, grow * feat), nn.PixelShuffle(factor)]
                    self.upsample = nn.Sequential(*layers)
                else:
                    self.conv_up1 = conv(feat, feat)
                    if scale == 4:
                        self.conv_up2 = conv(feat, feat)
                    self.conv_hr = conv(feat, feat)
                self.conv_last = conv(feat, channels)
            else:
                self.conv_last = conv(embed, channels)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            size = tuple(x.shape[-2:])
            y = self.patch_embed.norm(tokens(x))
            for layer in self.layers:
                y = layer(y, size)
            return image(self.norm(y), size)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            x = nn.functional.pad(
                x, (0, (window - w % window) % window, 0, (window - h % window) % window), "reflect"
            )
            x = x - self.mean
            first = self.conv_first(x)
            body = self.conv_after_body(self.features(first)) + first
            up, scale = s["upsampler"], s["scale"]
            if up == "pixelshuffledirect":
                out = self.upsample(body)
            elif up == "pixelshuffle":
                out = self.conv_last(self.upsample(self.conv_before_upsample(body)))
            elif up == "nearest+conv":
                lrelu = nn.functional.leaky_relu
                out = self.conv_before_upsample(body)
                out = lrelu(
                    self.conv_up1(nn.functional.interpolate(out, scale_factor=2, mode="nearest")), 0.2
                )
                if scale == 4:
                    out = lrelu(
                        self.conv_up2(nn.functional.interpolate(out, scale_factor=2, mode="nearest")), 0.2
                    )
                out = self.conv_last(lrelu(self.conv_hr(out), 0.2))
            else:
                out = x + self.conv_last(body)
            return (out + self.mean)[..., : h * scale, : w * scale]

    module = SwinIR()
    kept = {k: v for k, v in tensors.items() if not k.endswith(DROPPED)}
    module.load_state_dict(kept, strict=True)
    return module, s["scale"]


def tokens(x: Any) -> Any:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def image(x: Any, size: tuple[int, int]) -> Any:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


def partition(x: Any, window: int) -> Any:
    """(B, H, W, C) -> (B * windows, window * window, C), windows in row order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def unpartition(windows: Any, window: int, h: int, w: int) -> Any:
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_index(window: int) -> Any:
    """For each pair of positions in a window, the row of the relative position bias table."""
    import torch

    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def shift_mask(h: int, w: int, window: int, shift: int, device: Any) -> Any:
    """(windows, n, n): -100 between positions that came from different regions of the rolled picture."""
    import torch

    regions = torch.zeros(1, h, w, 1, device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, rows, cols, :] = label
            label += 1
    ids = partition(regions, window).squeeze(-1)
    return (ids[:, None, :] - ids[:, :, None]).ne(0).float() * -100.0
