"""Write a tiny random-weight Stable Diffusion 1.x-layout diffusers folder (about 200 KB).

The UNet, VAE and text encoder use the configurations of diffusers' own StableDiffusionPipeline tests
(tests/pipelines/stable_diffusion, `get_dummy_components`); the tokenizer is a byte-level CLIP tokenizer
written here (every byte is a token, no merges), so the folder loads fully offline. The weights are random:
images are noise, but every code path of a real SD1.5 checkpoint runs, in milliseconds.

    python -m tools.make_tiny_random_model [--out assets/models/tiny-random-sd15] [--seed 0]

Also used by tests to build the same model in a temporary folder. Imports torch/diffusers inside functions.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "models" / "tiny-random-sd15"
TEXT_DIM = 8
SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "skip_prk_steps": True,
    "prediction_type": "epsilon",
}


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for the bytes 0..255, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def make_tokenizer(max_length: int = 77) -> Any:
    from transformers import CLIPTokenizer

    base = byte_symbols()
    tokens = base + [s + "</w>" for s in base] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=max_length)


def make_vae(
    seed: int = 0,
    scaling_factor: float = 0.18215,
    channels: tuple[int, ...] = (4, 8),
    latent_channels: int = 4,
    shift_factor: float | None = None,
) -> Any:
    """A tiny VAE with seeded random weights: by default two levels (64x64 -> 32x32x4); SD3/Flux-like
    ones have 16 latent channels, a shift and no quant convs."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    flow_like = shift_factor is not None
    return AutoencoderKL(
        block_out_channels=list(channels),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        latent_channels=latent_channels,
        norm_num_groups=2,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=not flow_like,
        use_post_quant_conv=not flow_like,
    )


def make_components(
    seed: int = 0, unet_channels: tuple[int, ...] = (4, 8), layers: int = 1, in_channels: int = 4
) -> dict[str, Any]:
    """The pipeline components (unet, vae, text_encoder, tokenizer, scheduler) with seeded random weights
    (in_channels 9: an inpainting UNet, given the mask and the masked picture's latents)."""
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = make_tokenizer()
    depth = len(unet_channels)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=unet_channels,
        layers_per_block=layers,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (depth - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (depth - 1) + ("UpBlock2D",),
        cross_attention_dim=TEXT_DIM,
        norm_num_groups=2,
    )
    vae = make_vae(seed)
    torch.manual_seed(seed)
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
            eos_token_id=end,
            pad_token_id=end,
            hidden_size=TEXT_DIM,
            intermediate_size=16,
            layer_norm_eps=1e-05,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler.from_config(SCHEDULER)
    for module in (unet, vae, text_encoder):
        module.eval()
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
    }


def pipeline(components: dict[str, Any]) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        **components,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def write(out: Path, seed: int = 0, **sizes: Any) -> Path:
    """Save the model as a diffusers folder at `out` (replacing it atomically)."""
    return save_folder(pipeline(make_components(seed, **sizes)), out)


def save_folder(pipe: Any, out: Path, drop: tuple[str, ...] = ()) -> Path:
    """`pipe.save_pretrained` into a temporary folder, without the subfolders `drop`, then swapped in at
    `out` (a reader never sees half a model)."""
    temp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    pipe.save_pretrained(temp, safe_serialization=True)
    for name in drop:
        shutil.rmtree(temp / name, ignore_errors=True)
    old = out.parent / f".{out.name}.old"
    if out.exists():
        os.replace(out, old)
    os.replace(temp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.out, args.seed))


if __name__ == "__main__":
    main()
