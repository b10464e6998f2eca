"""Train a ControlNet for the embedded tiny-shapes model: canny edges of a shape image -> that image.

ControlNetModel.from_unet copies the embedded UNet's encoder (the zero convolutions start at zero, so step 0
adds nothing); the UNet, VAE and text encoder stay frozen. Each step draws a fresh batch of the embedded
model's training images (tools/tiny_shapes_data.py, the Draw Shape node's draw()), uses cv2.Canny of each
image as its control and its caption as the prompt, and minimises the model's own objective (epsilon or
v-prediction, from its scheduler config) on noised latents of the image.

Reproducible and resumable: the batch and noise of step N come from (seed, N), and the state (ControlNet,
optimiser, step) is saved atomically every --checkpoint-seconds under --workdir; running again continues.
Time on CPU (1 thread, batch 16): about 0.65 s a step on the 2-core dev machine (~5500 steps an hour).

    python -m tools.train_tiny_controlnet [--seconds 3600] [--threads 1] [--out assets/models/controlnet/tiny-shapes-canny]

Imports torch/diffusers/cv2; never Qt.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tools.tiny_shapes_data import random_batch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "assets" / "models" / "tiny-shapes"
OUT = ROOT / "assets" / "models" / "controlnet" / "tiny-shapes-canny"
WORKDIR = ROOT / ".train" / "controlnet"


@dataclass(frozen=True)
class Config:
    batch: int = 16
    lr: float = 3e-4
    size: int = 64
    seed: int = 0
    canny_low: int = 100
    canny_high: int = 200


PRESETS = {"full": Config(), "tiny": Config(batch=2)}


def control_images(images: np.ndarray, cfg: Config) -> np.ndarray:
    """uint8 (B, H, W, 3) -> canny edges as float (B, 3, H, W) 0..1, as the Canny node makes them."""
    edges = [cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cfg.canny_low, cfg.canny_high) for im in images]
    return np.repeat(np.stack(edges)[:, None].astype(np.float32) / 255.0, 3, axis=1)


def load_frozen(model: Path):
    """The embedded model's UNet, VAE, text encoder, tokenizer and scheduler (frozen, CPU, fp32)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    common = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", **common)
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae", **common)
    text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", **common)
    tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **common)
    scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler", **common)
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return unet, vae, text_encoder, tokenizer, scheduler


def make_controlnet(unet, vae):
    from diffusers import ControlNetModel

    blocks = len(vae.config.block_out_channels)
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256)[:blocks])


def train(
    cfg: Config,
    model: Path,
    workdir: Path,
    max_steps: int,
    max_seconds: float,
    ckpt_seconds: float,
    log=print,
    device: str = "cpu",
):
    """Train until max_steps or max_seconds (whichever first), resuming from workdir/state.pt; returns the
    trained ControlNet."""
    unet, vae, text_encoder, tokenizer, scheduler = load_frozen(model)
    torch.manual_seed(cfg.seed)
    net = make_controlnet(unet, vae).train()
    for module in (unet, vae, text_encoder, net):
        module.to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    state_path, step = workdir / "state.pt", 0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        net.load_state_dict(state["controlnet"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
        log(f"resumed at step {step}")
    prompts: dict[str, torch.Tensor] = {}
    factor = vae.config.scaling_factor

    def encode(text: str) -> torch.Tensor:
        if text not in prompts:
            ids = tokenizer(
                text, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
            )
            with torch.no_grad():
                prompts[text] = text_encoder(ids.input_ids.to(device))[0][0]
        return prompts[text]

    def save() -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        temp = state_path.with_suffix(".tmp")
        torch.save({"controlnet": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step}, temp)
        os.replace(temp, state_path)

    begun, start = step, time.monotonic()
    last_ckpt = start
    losses: list[float] = []
    while step < max_steps and time.monotonic() - start < max_seconds:
        rng = np.random.default_rng([cfg.seed, step])
        generator = torch.Generator("cpu").manual_seed(cfg.seed * 1_000_003 + step)
        images, samples = random_batch(rng, cfg.batch, cfg.size)
        control = torch.from_numpy(control_images(images, cfg)).to(device)
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)
        embeddings = torch.stack([encode(s.caption) for s in samples])
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator) * factor  # CPU generator, any device
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch,), generator=generator)
        t = t.to(device)
        noisy = scheduler.add_noise(latents, noise, t)
        down, mid = net(noisy, t, embeddings, controlnet_cond=control, return_dict=False)
        pred = unet(
            noisy, t, embeddings, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
        target = (
            scheduler.get_velocity(latents, noise, t)
            if scheduler.config.prediction_type == "v_prediction"
            else noise
        )
        loss = F.mse_loss(pred, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            log(f"step {step} loss {np.mean(losses[-50:]):.4f} {time.monotonic() - start:.0f}s")
        if time.monotonic() - last_ckpt > ckpt_seconds:
            save()
            last_ckpt = time.monotonic()
    if step > begun:
        save()
    return net.eval(), step


def export(net, out: Path, cfg: Config, steps: int) -> Path:
    """The ControlNet as a diffusers folder with nodeloom.json (family tiny-shapes, how it was trained)."""
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out, safe_serialization=True)
    info = {"family": "tiny-shapes", "trained_steps": steps, "config": asdict(cfg)}
    (out / "nodeloom.json").write_text(json.dumps(info, indent=2) + "\n", "utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="full", help="tiny = CI smoke size")
    parser.add_argument("--steps", type=int, default=1_000_000, help="0 = export the saved state only")
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--checkpoint-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1, help="keep 1 on a shared machine")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]
    cfg = cfg if args.batch is None else replace(cfg, batch=args.batch)
    net, steps = train(
        cfg, args.model, args.workdir, args.steps, args.seconds, args.checkpoint_seconds, device=args.device
    )
    print(export(net.cpu(), args.out, cfg, steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
