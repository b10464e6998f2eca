"""The embedded tiny-shapes model's architecture, checkpoints and export: a miniature Stable Diffusion 1.x.

Shared by the trainer (tools/train_tiny_shapes.py) and anything that needs the same modules: the configs, the
three model builders, checkpoint I/O, the VAE's latent scale, and the writer of the diffusers folder.
Imports torch, diffusers and transformers; never Qt.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tools.tiny_shapes_data import SPECIAL_TOKENS, build_tokenizer, random_batch

SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}


@dataclass(frozen=True)
class Config:
    seed: int = 0
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_groups: int = 8
    vae_steps: int = 3000
    vae_batch: int = 16
    vae_crop: int = 32
    vae_lr: float = 1e-3
    vae_kl: float = 1e-6
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_layers: int = 1
    unet_groups: int = 8
    unet_head_dim: int = 16
    unet_steps: int = 6000
    unet_batch: int = 32
    unet_lr: float = 6e-4
    warmup: int = 200
    prediction: str = "v_prediction"
    min_snr_gamma: float = 5.0
    offset_noise: float = 0.1
    caption_dropout: float = 0.1
    ema: float = 0.999
    pool: int = 30000


TINY = Config(
    vae_channels=(8, 16, 16),
    vae_groups=4,
    vae_steps=4,
    vae_batch=4,
    text_hidden=16,
    text_layers=1,
    text_heads=2,
    unet_channels=(16, 32, 32),
    unet_groups=4,
    unet_head_dim=8,
    unet_steps=6,
    unet_batch=4,
    warmup=2,
    pool=16,
)


def make_vae(cfg: Config):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=cfg.vae_groups,
        sample_size=64,
    )


def make_text_encoder(cfg: Any, tokenizer, projection: bool = False):
    """A tiny CLIP text encoder over the grammar's tokenizer (`cfg`: text_hidden, text_layers, text_heads);
    `projection` adds the projected pooled output SD3-class models read."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    start, end = (tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_hidden * 4,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=cfg.text_hidden,
        bos_token_id=start,
        eos_token_id=end,
        pad_token_id=end,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def make_unet(cfg: Config):
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=cfg.unet_head_dim,
        norm_num_groups=cfg.unet_groups,
    )


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] batches, on the 0..1 scale."""
    mse = F.mse_loss((a.clamp(-1, 1) + 1) / 2, (b.clamp(-1, 1) + 1) / 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    torch.save(obj, temp)
    os.replace(temp, path)


def load(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def load_trained(cfg: Config, workdir: Path):
    """The checkpointed VAE (scaling factor set) and UNet-stage state, read without writing anything."""
    vae = make_vae(cfg)
    vae.load_state_dict(load(workdir / "vae.pt")["model"])
    vae.eval().requires_grad_(False)
    state = load(workdir / "unet.pt")
    if state is None:
        raise SystemExit(f"no UNet checkpoint in {workdir}")
    return set_scaling_factor(vae, cfg), state


@torch.no_grad()
def set_scaling_factor(vae, cfg: Config):
    """SD convention: latents are multiplied by 1 / std so the diffusion model sees unit variance."""
    images, _ = random_batch(np.random.default_rng([cfg.seed, 9]), 256)
    latents = vae.encode(to_tensor(images)).latent_dist.mode()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae


@torch.no_grad()
def vae_psnr(vae, seed: int, count: int = 256) -> float:
    """Reconstruction PSNR on fresh full 64x64 images (posterior mode)."""
    images, _ = random_batch(np.random.default_rng([seed, 7]), count)
    x = to_tensor(images)
    return psnr(vae.decode(vae.encode(x).latent_dist.mode()).sample, x)


def export(cfg: Config, vae, state: dict, out: Path) -> Path:
    """Write the EMA weights as a StableDiffusionPipeline folder (fp32 safetensors)."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    tokenizer = build_tokenizer()
    unet, text = make_unet(cfg), make_text_encoder(cfg, tokenizer)
    unet.load_state_dict(state["ema"]["unet"])
    text.load_state_dict(state["ema"]["text"])
    scheduler = PNDMScheduler.from_config({**SD15_SCHEDULER, "prediction_type": cfg.prediction})
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    temp = out.parent / f".{out.name}.tmp"
    pipe.save_pretrained(temp, safe_serialization=True)
    if out.exists():
        old = out.parent / f".{out.name}.old"
        os.replace(out, old)
        os.replace(temp, out)
        for item in sorted(old.rglob("*"), reverse=True):
            item.rmdir() if item.is_dir() else item.unlink()
        old.rmdir()
    else:
        os.replace(temp, out)
    return out
