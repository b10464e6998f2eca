"""Write a tiny random-weight ControlNet for the shipped tiny random SD1.5-layout model (a few hundred KB).

ControlNetModel.from_unet copies the encoder half of the tiny UNet; the conditioning embedding downsamples by
the tiny VAE's factor (2): the control image has the render's size (latents x 2). The zero
convolutions are filled with small random values so the residuals are not zero (a freshly made ControlNet
adds nothing). Its family is the base model's, named in nodeloom.json. Stands in until a trained ControlNet
for the embedded model ships.

    python -m tools.make_tiny_random_controlnet [--unet assets/models/tiny-random-sd15] [--out ...] [--seed 0]

Also used by tests. Imports torch/diffusers inside functions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "assets" / "models" / "tiny-random-sd15"
DEFAULT_OUT = ROOT / "assets" / "models" / "controlnet" / "tiny-random-sd15-canny"


def build(model: Path, seed: int = 0):
    """The ControlNetModel made from `model`'s UNet, with seeded random zero convolutions."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", local_files_only=True)
    vae_blocks = len(AutoencoderKL.load_config(model / "vae")["block_out_channels"])
    channels = (16, 32, 96, 256)[:vae_blocks]
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        zero_convs = [
            *net.controlnet_down_blocks,
            net.controlnet_mid_block,
            net.controlnet_cond_embedding.conv_out,
        ]
        for conv in zero_convs:
            for p in conv.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return net


def write(out: Path, model: Path = DEFAULT_MODEL, seed: int = 0, family: str | None = None) -> Path:
    """Save the tiny ControlNet as a diffusers folder at `out` with nodeloom.json naming its family."""
    net = build(model, seed)
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out, safe_serialization=True)
    (out / "nodeloom.json").write_text(json.dumps({"family": family or model.name}) + "\n", "utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.out, args.model, args.seed))


if __name__ == "__main__":
    main()
