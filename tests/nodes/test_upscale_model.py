"""Upscale models against reference forwards written here in plain torch from the papers' descriptions (ESRGAN's
RRDBNet: Wang et al. 2018, with Real-ESRGAN's pixel-unshuffle for x2; Real-ESRGAN's SRVGGNetCompact), on random
weights in both RRDBNet key layouts; tiling; the nodes through a graph; bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.graph.model import Edge, Graph, Node
from app.registry import default_registry
from app.runtime.upscalers import UpscalerProblem, read
from app.runtime.upscalers.tiles import run_tiled

torch.set_num_threads(1)
FEATURES, GROWTH, BLOCKS = 8, 4, 2


def _conv(cin, cout, gen):
    return torch.randn(cout, cin, 3, 3, generator=gen) * (0.5 / (cin * 9) ** 0.5), torch.randn(
        cout, generator=gen
    ) * 0.05


def rrdb_weights(ups: int, in_channels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A BasicSR-layout RRDBNet state dict with random weights."""
    gen = torch.Generator().manual_seed(seed)
    named = {"conv_first": (in_channels, FEATURES)}
    for b in range(BLOCKS):
        for r in (1, 2, 3):
            for c in range(1, 6):
                named[f"body.{b}.rdb{r}.conv{c}"] = (
                    FEATURES + (c - 1) * GROWTH,
                    GROWTH if c < 5 else FEATURES,
                )
    named["conv_body"] = (FEATURES, FEATURES)
    named.update({f"conv_up{i}": (FEATURES, FEATURES) for i in range(1, ups + 1)})
    named.update({"conv_hr": (FEATURES, FEATURES), "conv_last": (FEATURES, 3)})
    tensors = {}
    for name, (cin, cout) in named.items():
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = _conv(cin, cout, gen)
    return tensors


def rrdb_reference(w, x, ups: int, fold: int = 1):
    def conv(name, v):
        return F.conv2d(v, w[f"{name}.weight"], w[f"{name}.bias"], padding=1)

    def lrelu(v):
        return F.leaky_relu(v, 0.2)

    if fold > 1:
        x = F.pixel_unshuffle(x, fold)
    feat = conv("conv_first", x)
    body = feat
    for b in range(BLOCKS):
        block_in = body
        for r in (1, 2, 3):
            rdb_in = body
            x1 = lrelu(conv(f"body.{b}.rdb{r}.conv1", rdb_in))
            x2 = lrelu(conv(f"body.{b}.rdb{r}.conv2", torch.cat([rdb_in, x1], 1)))
            x3 = lrelu(conv(f"body.{b}.rdb{r}.conv3", torch.cat([rdb_in, x1, x2], 1)))
            x4 = lrelu(conv(f"body.{b}.rdb{r}.conv4", torch.cat([rdb_in, x1, x2, x3], 1)))
            x5 = conv(f"body.{b}.rdb{r}.conv5", torch.cat([rdb_in, x1, x2, x3, x4], 1))
            body = x5 * 0.2 + rdb_in
        body = body * 0.2 + block_in
    feat = feat + conv("conv_body", body)
    for i in range(1, ups + 1):
        feat = lrelu(conv(f"conv_up{i}", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def to_original_layout(w: dict[str, torch.Tensor], ups: int) -> dict[str, torch.Tensor]:
    """The same weights under the original ESRGAN repository's names (model.0, model.1.sub..., model.3 ...)."""
    index = {"conv_first": "model.0", "conv_body": f"model.1.sub.{BLOCKS}"}
    index.update({f"conv_up{i}": f"model.{3 * i}" for i in range(1, ups + 1)})
    index.update({"conv_hr": f"model.{3 * ups + 2}", "conv_last": f"model.{3 * ups + 4}"})
    out = {}
    for key, value in w.items():
        name, kind = key.rsplit(".", 1)
        if name.startswith("body."):
            _, b, rdb, conv = name.split(".")
            out[f"model.1.sub.{b}.RDB{rdb[-1]}.{conv}.0.{kind}"] = value
        else:
            out[f"{index[name]}.{kind}"] = value
    return out


def compact_weights(convs: int = 3, scale: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tensors, index = {}, 0
    for i in range(convs):
        cin = 3 if i == 0 else FEATURES
        cout = 3 * scale * scale if i == convs - 1 else FEATURES
        tensors[f"body.{index}.weight"], tensors[f"body.{index}.bias"] = _conv(cin, cout, gen)
        if i < convs - 1:
            tensors[f"body.{index + 1}.weight"] = torch.rand(FEATURES, generator=gen) * 0.3
        index += 2
    return tensors


def compact_reference(w, x, convs: int = 3, scale: int = 2):
    out = x
    for i in range(convs):
        out = F.conv2d(out, w[f"body.{2 * i}.weight"], w[f"body.{2 * i}.bias"], padding=1)
        if i < convs - 1:
            out = F.prelu(out, w[f"body.{2 * i + 1}.weight"])
    return F.pixel_shuffle(out, scale) + F.interpolate(x, scale_factor=scale, mode="nearest")


@pytest.fixture
def picture():
    return torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize(("ups", "fold", "scale"), [(2, 1, 4), (2, 2, 2), (1, 1, 2)])
def test_rrdbnet_matches_the_reference_in_both_layouts(tmp_path, picture, ups, fold, scale):
    weights = rrdb_weights(ups, in_channels=3 * fold * fold)
    save_file(weights, tmp_path / "basicsr.safetensors")
    torch.save(to_original_layout(weights, ups), tmp_path / "original.pth")
    expected = rrdb_reference(weights, picture, ups, fold)
    for name in ("basicsr.safetensors", "original.pth"):
        module, architecture, got_scale = read(tmp_path / name)
        assert (architecture, got_scale) == ("ESRGAN (RRDBNet)", scale)
        with torch.no_grad():
            out = module(picture)
        assert out.shape == (1, 3, 20 * scale, 24 * scale)
        assert (out - expected).abs().max() < 1e-5, name


def test_basicsr_params_ema_wrapper_is_unwrapped(tmp_path, picture):
    weights = rrdb_weights(2)
    torch.save({"params_ema": weights}, tmp_path / "RealESRGAN_x4plus.pth")
    module, _, scale = read(tmp_path / "RealESRGAN_x4plus.pth")
    with torch.no_grad():
        assert (module(picture) - rrdb_reference(weights, picture, 2)).abs().max() < 1e-5
    assert scale == 4


def test_compact_matches_the_reference(tmp_path, picture):
    weights = compact_weights()
    save_file(weights, tmp_path / "realesr-general-x2.safetensors")
    module, architecture, scale = read(tmp_path / "realesr-general-x2.safetensors")
    assert (architecture, scale) == ("Real-ESRGAN compact (SRVGGNetCompact)", 2)
    with torch.no_grad():
        assert (module(picture) - compact_reference(weights, picture)).abs().max() < 1e-5


def test_tiles_equal_the_whole_picture_when_the_overlap_covers_what_the_network_sees(tmp_path):
    weights = compact_weights(convs=3)  # sees 3 pixels around: overlap 8 blends 4 and keeps 4 as context
    save_file(weights, tmp_path / "c.safetensors")
    module, _, scale = read(tmp_path / "c.safetensors")
    picture = torch.rand(1, 3, 45, 37, generator=torch.Generator().manual_seed(2))
    ticks = []
    with torch.no_grad():
        whole = module(picture)
        tiled = run_tiled(
            module, picture, scale, tile=16, overlap=8, on_tile=lambda d, t: ticks.append((d, t))
        )
        seams = run_tiled(module, picture, scale, tile=16, overlap=0)
    assert (tiled - whole).abs().max() < 1e-5
    assert ticks[-1] == (9, 9)  # 3 x 3 tiles, reported one by one
    assert (seams - whole).abs().max() > 1e-3  # without context the tile edges differ: the overlap matters


def _graph(path: str) -> Graph:
    g = Graph()
    g.add_node(Node("image", "image.load", params={"path": path}))
    g.add_node(Node("loader", "model.upscale", params={"model_name": "tiny-x4.safetensors"}))
    g.add_node(Node("up", "image.upscale_with_model", params={"tile": 16, "overlap": 8}))
    g.connect(Edge("image", "image", "up", "image"))
    g.connect(Edge("loader", "upscale_model", "up", "upscale_model"))
    return g


def test_the_nodes_upscale_a_picture_from_the_upscale_models_folder(tmp_path, monkeypatch):
    import cv2

    folder = tmp_path / "models" / "upscale_models"
    folder.mkdir(parents=True)
    weights = rrdb_weights(2)
    save_file(weights, folder / "tiny-x4.safetensors")
    monkeypatch.setenv("NODELOOM_MODEL_ROOTS", str(tmp_path / "models"))
    rgb = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "small.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    result = Executor(default_registry()).run(
        _graph(str(tmp_path / "small.png")), ["up"], RunSettings(device="cpu")
    )
    assert result.status == "ok", (result.errors, [str(p) for p in result.problems])
    out = result.outputs["up"]["image"]
    assert out.shape == (1, 48, 40, 3)
    picture = torch.from_numpy(rgb.astype(np.float32) / 255).movedim(-1, 0)[None]
    expected = rrdb_reference(weights, picture, 2).clamp(0, 1).movedim(1, -1).numpy()
    assert np.abs(out - expected).max() < 1e-4


def test_a_file_that_is_no_upscale_model_is_named_in_the_error(tmp_path, monkeypatch):
    save_file({"weight": torch.zeros(2, 2)}, tmp_path / "lora.safetensors")
    with pytest.raises(UpscalerProblem, match="lora.safetensors: not an upscale model"):
        read(tmp_path / "lora.safetensors")
    broken = rrdb_weights(2)
    broken["conv_hr.weight"] = torch.zeros(FEATURES, FEATURES + 1, 3, 3)
    save_file(broken, tmp_path / "broken.safetensors")
    with pytest.raises(UpscalerProblem, match="broken.safetensors: looks like ESRGAN"):
        read(tmp_path / "broken.safetensors")


def swinir_weights(
    embed=8, depths=(2,), heads=(2,), window=4, hidden=16, scale=2, seed=3
) -> dict[str, torch.Tensor]:
    """A lightweight SwinIR (pixelshuffledirect) state dict under the official names, stored buffers included."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, s=0.2):
        return torch.randn(*shape, generator=gen) * s

    t = {"conv_first.weight": rand(embed, 3, 3, 3), "conv_first.bias": rand(embed, s=0.02),
         "patch_embed.norm.weight": 1 + rand(embed, s=0.05), "patch_embed.norm.bias": rand(embed, s=0.02)}  # fmt: skip
    for i, (depth, head) in enumerate(zip(depths, heads, strict=True)):
        for j in range(depth):
            p = f"layers.{i}.residual_group.blocks.{j}."
            t.update({p + "norm1.weight": 1 + rand(embed, s=0.05), p + "norm1.bias": rand(embed, s=0.02),
                      p + "attn.relative_position_bias_table": rand((2 * window - 1) ** 2, head),
                      p + "attn.relative_position_index": torch.zeros(window**2, window**2, dtype=torch.long),
                      p + "attn.qkv.weight": rand(3 * embed, embed), p + "attn.qkv.bias": rand(3 * embed, s=0.02),
                      p + "attn.proj.weight": rand(embed, embed), p + "attn.proj.bias": rand(embed, s=0.02),
                      p + "norm2.weight": 1 + rand(embed, s=0.05), p + "norm2.bias": rand(embed, s=0.02),
                      p + "mlp.fc1.weight": rand(hidden, embed), p + "mlp.fc1.bias": rand(hidden, s=0.02),
                      p + "mlp.fc2.weight": rand(embed, hidden), p + "mlp.fc2.bias": rand(embed, s=0.02)})  # fmt: skip
            if j % 2:
                t[p + "attn_mask"] = torch.zeros(16, window**2, window**2)  # stored for the training size
        t[f"layers.{i}.conv.weight"], t[f"layers.{i}.conv.bias"] = (
            rand(embed, embed, 3, 3, s=0.05),
            rand(embed, s=0.02),
        )
    t.update({"norm.weight": 1 + rand(embed, s=0.05), "norm.bias": rand(embed, s=0.02),
              "conv_after_body.weight": rand(embed, embed, 3, 3, s=0.05), "conv_after_body.bias": rand(embed, s=0.02),
              "upsample.0.weight": rand(3 * scale * scale, embed, 3, 3, s=0.05),
              "upsample.0.bias": rand(3 * scale * scale, s=0.02)})  # fmt: skip
    return t


def naive_swin_block(w: dict, prefix: str, x, h: int, wd: int, window: int, shift: int, heads: int):
    """One Swin block written pixel by pixel: every position of the rolled picture attends to the positions of
    its window that came from the same region of the picture, with the bias of their relative offset."""
    c = x.shape[-1]
    d = c // heads

    def norm(v, name):
        return F.layer_norm(v, (c,), w[f"{prefix}{name}.weight"], w[f"{prefix}{name}.bias"])

    y = torch.roll(norm(x, "norm1").view(h, wd, c), (-shift, -shift), (0, 1))
    qkv = y @ w[prefix + "attn.qkv.weight"].T + w[prefix + "attn.qkv.bias"]
    q, k, v = (
        qkv[..., :c].view(h, wd, heads, d),
        qkv[..., c : 2 * c].view(h, wd, heads, d),
        qkv[..., 2 * c :].view(h, wd, heads, d),
    )
    table = w[prefix + "attn.relative_position_bias_table"]

    def region(i, size):
        return 0 if not shift or i < size - window else (1 if i < size - shift else 2)

    out = torch.zeros(h, wd, heads, d)
    for i in range(h):
        for j in range(wd):
            top, left = i // window * window, j // window * window
            logits, values = [], []
            for a in range(top, top + window):
                for b in range(left, left + window):
                    bias = table[(i - a + window - 1) * (2 * window - 1) + (j - b + window - 1)]
                    apart = (region(i, h), region(j, wd)) != (region(a, h), region(b, wd))
                    logits.append((q[i, j] * k[a, b]).sum(-1) * d**-0.5 + bias - 100.0 * apart)
                    values.append(v[a, b])
            weights = torch.stack(logits).softmax(0)
            out[i, j] = (weights[..., None] * torch.stack(values)).sum(0)
    attended = out.reshape(h, wd, c) @ w[prefix + "attn.proj.weight"].T + w[prefix + "attn.proj.bias"]
    x = x + torch.roll(attended, (shift, shift), (0, 1)).reshape(1, h * wd, c)
    hidden = F.gelu(norm(x, "norm2") @ w[prefix + "mlp.fc1.weight"].T + w[prefix + "mlp.fc1.bias"])
    return x + hidden @ w[prefix + "mlp.fc2.weight"].T + w[prefix + "mlp.fc2.bias"]


def test_swinir_blocks_match_a_pixel_by_pixel_reference_and_the_model_reads_from_a_file(tmp_path):
    weights = swinir_weights()
    save_file(weights, tmp_path / "002_lightweightSR_SwinIR-S_x2.safetensors")
    module, architecture, scale = read(tmp_path / "002_lightweightSR_SwinIR-S_x2.safetensors")
    assert (architecture, scale) == ("SwinIR", 2)
    x = torch.randn(1, 8 * 12, 8, generator=torch.Generator().manual_seed(4))
    for j, shift in ((0, 0), (1, 2)):  # the second block works on windows shifted by half a window
        block = module.layers[0].residual_group.blocks[j]
        with torch.no_grad():
            ours = block(x, (8, 12))
        reference = naive_swin_block(weights, f"layers.0.residual_group.blocks.{j}.", x, 8, 12, 4, shift, 2)
        assert (ours - reference).abs().max() < 1e-5, shift
    picture = torch.rand(1, 3, 10, 13, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        out = module(picture)
    assert out.shape == (1, 3, 20, 26)  # padded to whole windows inside, cropped back
