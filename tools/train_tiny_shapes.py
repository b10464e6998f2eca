"""Train the embedded tiny-shapes model (a miniature Stable Diffusion 1.x) and write it as a diffusers folder.

Two stages, both seeded and resumable from checkpoints under --workdir:
  1. vae:  AutoencoderKL 64x64x3 -> 16x16x4, trained on random 32x32 crops (fully convolutional, so it
           transfers to full images), L1 + MSE + a tiny KL term.
  2. unet: UNet2DConditionModel with cross-attention + a small CLIPTextModel trained jointly on pre-encoded
           latents; v-prediction on the SD1.5 scaled_linear schedule, min-SNR-clipped loss weights, offset
           noise, 10 % caption dropout (so classifier-free guidance works), EMA weights for export.
Every batch is a pure function of (seed, stage, step), so a resumed run draws the same data it would have.

    python -m tools.train_tiny_shapes --workdir .train/tiny-shapes --out assets/models/tiny-shapes

Imports torch, diffusers and transformers; never Qt.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

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


def make_text_encoder(cfg: Config, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

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
    return CLIPTextModel(config)


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


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_vae(cfg: Config, workdir: Path, max_seconds: float, ckpt_seconds: float, log=print):
    """Stage 1. Returns the trained VAE with its scaling_factor set."""
    path = workdir / "vae.pt"
    vae = make_vae(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    state = load(path) or {"step": 0, "elapsed": 0.0}
    if "model" in state:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
    step, elapsed, started, saved = state["step"], state["elapsed"], time.time(), time.time()
    losses = []

    def checkpoint() -> None:
        total = elapsed + time.time() - started
        save_atomic(
            {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": total}, path
        )

    while step < cfg.vae_steps and time.time() - started < max_seconds:
        rng = np.random.default_rng([cfg.seed, 1, step])
        images, _ = random_batch(rng, cfg.vae_batch)
        x0, y0 = rng.integers(0, 64 - cfg.vae_crop + 1, 2)
        x = to_tensor(images[:, y0 : y0 + cfg.vae_crop, x0 : x0 + cfg.vae_crop])
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.vae_steps, cfg.vae_lr, cfg.warmup)
        posterior = vae.encode(x).latent_dist
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = F.mse_loss(recon, x) + F.l1_loss(recon, x) + cfg.vae_kl * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 100 == 0 or step == cfg.vae_steps:
            rate = len(losses) / max(1e-6, time.time() - started)
            log(f"vae step {step}/{cfg.vae_steps} loss {np.mean(losses[-100:]):.4f} {rate:.2f} steps/s")
        if time.time() - saved > ckpt_seconds:
            checkpoint()
            saved = time.time()
    if step > state["step"]:
        checkpoint()
    vae.eval().requires_grad_(False)
    return set_scaling_factor(vae, cfg)


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


@torch.no_grad()
def encode_pool(vae, tokenizer, cfg: Config, workdir: Path, log=print) -> dict:
    """Pre-encoded training set: latent posterior mean/std and caption token ids, cached on disk."""
    path = workdir / "pool.pt"
    cached = load(path)
    if cached is not None and cached["count"] == cfg.pool and cached["scale"] == vae.config.scaling_factor:
        return cached
    means, stds, ids = [], [], []
    for chunk in range(0, cfg.pool, 256):
        images, samples = random_batch(
            np.random.default_rng([cfg.seed, 2, chunk]), min(256, cfg.pool - chunk)
        )
        dist = vae.encode(to_tensor(images)).latent_dist
        means.append(dist.mean.half())
        stds.append(dist.std.half())
        ids.append(
            tokenizer([s.caption for s in samples], padding="max_length", return_tensors="pt").input_ids
        )
        if chunk % 5120 == 0:
            log(f"encoded {chunk}/{cfg.pool} training images")
    pool = {"count": cfg.pool, "scale": vae.config.scaling_factor, "mean": torch.cat(means)}
    pool.update(std=torch.cat(stds), ids=torch.cat(ids))
    save_atomic(pool, path)
    return pool


def loss_weights(snr: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Min-SNR-gamma weights. For v-prediction the x0-space weight is min(snr, gamma) + 1: it caps the easy
    low-noise steps but keeps full weight on the high-noise steps where the prompt must fix the colours."""
    clipped = snr.clamp(max=cfg.min_snr_gamma)
    if cfg.prediction == "v_prediction":
        return (clipped + 1) / (snr + 1)
    return clipped / snr


def train_unet(cfg: Config, vae, workdir: Path, max_seconds: float, ckpt_seconds: float, log=print) -> dict:
    """Stage 2. Returns the checkpoint dict (with EMA weights)."""
    tokenizer = build_tokenizer()
    pool = encode_pool(vae, tokenizer, cfg, workdir, log)
    unet, text = make_unet(cfg), make_text_encoder(cfg, tokenizer)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.0)
    path = workdir / "unet.pt"
    state = load(path)
    if state is not None:
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        opt.load_state_dict(state["opt"])
        ema = state["ema"]
    else:
        ema = {"unet": unet.state_dict(), "text": text.state_dict()}
        ema = {k: {n: t.detach().clone() for n, t in v.items()} for k, v in ema.items()}
        state = {"step": 0, "elapsed": 0.0}
    step, elapsed, started, saved = state["step"], state["elapsed"], time.time(), time.time()
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0).float()
    empty = tokenizer([""], padding="max_length", return_tensors="pt").input_ids
    losses = []

    def snapshot() -> dict:
        total = elapsed + time.time() - started
        return {
            "unet": unet.state_dict(),
            "text": text.state_dict(),
            "opt": opt.state_dict(),
            "ema": ema,
        }, total

    def checkpoint() -> dict:
        data, total = snapshot()
        data.update(step=step, elapsed=total, config=asdict(cfg))
        save_atomic(data, path)
        return data

    unet.train()
    text.train()
    while step < cfg.unet_steps and time.time() - started < max_seconds:
        rng = np.random.default_rng([cfg.seed, 3, step])
        index = torch.from_numpy(rng.integers(0, cfg.pool, cfg.unet_batch))
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        b = cfg.unet_batch
        x0 = pool["mean"][index].float() + pool["std"][index].float() * torch.randn(
            b, 4, 16, 16, generator=gen
        )
        x0 = x0 * vae.config.scaling_factor
        ids = pool["ids"][index].clone()
        ids[torch.rand(b, generator=gen) < cfg.caption_dropout] = empty[0]
        noise = torch.randn(x0.shape, generator=gen)
        noise = noise + cfg.offset_noise * torch.randn(b, 4, 1, 1, generator=gen)
        t = torch.randint(0, 1000, (b,), generator=gen)
        a = alphas_cumprod[t].view(b, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = a.sqrt() * noise - (1 - a).sqrt() * x0 if cfg.prediction == "v_prediction" else noise
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.unet_steps, cfg.unet_lr, cfg.warmup)
        pred = unet(noisy, t, text(ids)[0]).sample
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
        loss = (per_sample * loss_weights(snr, cfg)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for key, model in (("unet", unet), ("text", text)):
                for name, value in model.state_dict().items():
                    if value.dtype.is_floating_point:
                        ema[key][name].mul_(decay).add_(value, alpha=1 - decay)
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.unet_steps:
            rate = len(losses) / max(1e-6, time.time() - started)
            lr = opt.param_groups[0]["lr"]
            log(
                f"unet step {step}/{cfg.unet_steps} loss {np.mean(losses[-50:]):.4f} lr {lr:.2e} {rate:.2f} steps/s"
            )
        if time.time() - saved > ckpt_seconds:
            checkpoint()
            saved = time.time()
    return checkpoint()


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


def run(
    cfg: Config, workdir: Path, out: Path | None, max_minutes: float, ckpt_minutes: float, log=print
) -> dict:
    """Both stages within a wall-clock budget; returns a summary. Resumes whatever the workdir holds."""
    torch.manual_seed(cfg.seed)
    deadline = time.time() + max_minutes * 60
    vae = train_vae(cfg, workdir, deadline - time.time(), ckpt_minutes * 60, log)
    summary = {"vae_psnr_db": vae_psnr(vae, cfg.seed + 1)}
    log(f"vae reconstruction PSNR {summary['vae_psnr_db']:.2f} dB")
    state = train_unet(cfg, vae, workdir, max(0.0, deadline - time.time()), ckpt_minutes * 60, log)
    summary.update(unet_step=state["step"], unet_seconds=state["elapsed"])
    if out is not None:
        export(cfg, vae, state, out)
        log(f"wrote {out} at unet step {state['step']}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(".train/tiny-shapes"), help="checkpoints")
    parser.add_argument("--out", type=Path, default=None, help="diffusers folder to write at the end")
    parser.add_argument("--preset", choices=("full", "tiny"), default="full", help="tiny = CI smoke size")
    parser.add_argument("--vae-steps", type=int, default=None)
    parser.add_argument("--unet-steps", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=1e9, help="stop (and checkpoint) after this")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--export-only", action="store_true", help="write --out from the checkpoints, no training"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = Config() if args.preset == "full" else TINY
    if args.vae_steps is not None:
        cfg = replace(cfg, vae_steps=args.vae_steps)
    if args.unet_steps is not None:
        cfg = replace(cfg, unet_steps=args.unet_steps)
    if args.export_only:
        vae, state = load_trained(cfg, args.workdir)
        export(cfg, vae, state, args.out)
        print(f"wrote {args.out} from unet step {state['step']}", flush=True)
        return 0
    summary = run(
        cfg,
        args.workdir,
        args.out,
        args.max_minutes,
        args.checkpoint_minutes,
        log=lambda m: print(m, flush=True),
    )
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
