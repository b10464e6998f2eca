"""Train the embedded tiny-shapes model (a miniature Stable Diffusion 1.x) and write it as a diffusers folder.

Two stages, both seeded and resumable from checkpoints under --workdir:
  1. vae:  AutoencoderKL 64x64x3 -> 16x16x4, trained on random 32x32 crops (fully convolutional, so it
           transfers to full images), L1 + MSE + a tiny KL term.
  2. unet: UNet2DConditionModel with cross-attention + a small CLIPTextModel trained jointly on pre-encoded
           latents; v-prediction on the SD1.5 scaled_linear schedule, min-SNR-clipped loss weights, offset
           noise, 10 % caption dropout (so classifier-free guidance works), EMA weights for export.
Every batch is a pure function of (seed, stage, step), so a resumed run draws the same data it would have.

    python -m tools.train_tiny_shapes --workdir .train/tiny-shapes --out assets/models/tiny-shapes

The shipped model's UNet stage ran on a lent H100 (the README has the exact command): --device cuda,
--workers to draw the training pool in parallel, --batch 1024 (the step is launch-bound, so a bigger batch
is nearly free) and --fit-minutes, which sizes the cosine schedule from the speed of the first 100 steps
(the fitted step count is logged; pass it as --unet-steps to resume such a run). --init starts the UNet and
text encoder from an exported folder when no checkpoint exists.

Imports torch, diffusers and transformers; never Qt.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tools.tiny_shapes_data import build_tokenizer, random_batch
from tools.tiny_shapes_model import (
    SD15_SCHEDULER,
    TINY,
    Config,
    export,
    load,
    load_trained,
    make_text_encoder,
    make_unet,
    make_vae,
    save_atomic,
    set_scaling_factor,
    to_tensor,
    vae_psnr,
)

__all__ = ["TINY", "Config", "main", "run"]


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


@dataclass(frozen=True)
class Runtime:
    """Where and how to train; none of it changes what a step computes (up to the device's arithmetic)."""

    device: str = "cpu"
    workers: int = 1  # processes drawing the training pool
    fit_minutes: float | None = None  # size the UNet schedule to end in this many minutes
    init: Path | None = None  # start the UNet and text encoder from this diffusers folder's weights


class StepLoop:
    """The bookkeeping every trainer's step loop shares, around its own draw / forward / optimiser step:
    whether to go on (steps left, wall-clock budget), the EMA update, sizing the cosine schedule to
    `rt.fit_minutes` from the speed of the first 100 steps (`total` changes then), a progress line every 50
    steps and a checkpoint (`save()`) every `ckpt_seconds`."""

    def __init__(self, name: str, state: dict, total: int, pairs: list, rt: Runtime, ema: float, log,
                 save, ckpt_seconds: float, max_seconds: float) -> None:  # fmt: skip
        self.name, self.step, self.total, self.rt, self.decay, self.log = (
            name,
            state["step"],
            total,
            rt,
            ema,
            log,
        )
        self.live, self.averaged = [p[0] for p in pairs], [p[1] for p in pairs]
        self.save, self.ckpt_seconds, self.max_seconds = save, ckpt_seconds, max_seconds
        self.first, self.before = self.step, state["elapsed"]
        self.started = self.saved = time.time()
        self.losses: list[torch.Tensor] = []

    def going(self) -> bool:
        return self.step < self.total and time.time() - self.started < self.max_seconds

    def elapsed(self) -> float:
        """Training seconds over every run of this workdir."""
        return self.before + time.time() - self.started

    def stepped(self, loss: torch.Tensor, lr: float) -> None:
        self.step += 1
        with torch.no_grad():
            torch._foreach_lerp_(
                self.averaged, self.live, 1 - min(self.decay, (1 + self.step) / (10 + self.step))
            )
        self.losses.append(loss.detach())  # no .item() per step: a GPU would wait on each one
        if self.rt.fit_minutes is not None and self.step - self.first == 100:
            rate = 100 / (time.time() - self.started)
            self.total = self.step + int(rate * (self.rt.fit_minutes * 60 - (time.time() - self.started)))
            self.log(
                f"schedule fitted to {self.rt.fit_minutes} min: {self.total} {self.name} steps at {rate:.1f} steps/s"
            )
        if self.step % 50 == 0 or self.step == self.total:
            rate = (self.step - self.first) / max(1e-6, time.time() - self.started)
            mean = torch.stack(self.losses[-50:]).mean().item()
            self.log(
                f"{self.name} step {self.step}/{self.total} loss {mean:.4f} lr {lr:.2e} {rate:.2f} steps/s"
            )
        if time.time() - self.saved > self.ckpt_seconds:
            self.save()
            self.saved = time.time()


def _draw_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, list[str]]:
    seed, chunk, count = args
    images, samples = random_batch(np.random.default_rng([seed, 2, chunk]), count)
    return images, [s.caption for s in samples]


@torch.no_grad()
def encode_pool(vae, tokenizer, cfg: Config, workdir: Path, rt: Runtime, log=print) -> dict:
    """Pre-encoded training set: latent posterior mean/std and caption token ids, cached on disk. Chunks are
    seeded by their start, so the pool is the same whatever the number of drawing workers."""
    path = workdir / "pool.pt"
    cached = load(path)
    if cached is not None and cached["count"] == cfg.pool and cached["scale"] == vae.config.scaling_factor:
        return cached
    jobs = [(cfg.seed, chunk, min(256, cfg.pool - chunk)) for chunk in range(0, cfg.pool, 256)]
    ids_of: dict[str, torch.Tensor] = {}
    means, stds, ids = [], [], []
    with ExitStack() as stack:
        imap = map  # one worker: draw in this process
        if rt.workers > 1:
            imap = stack.enter_context(multiprocessing.get_context("fork").Pool(rt.workers)).imap
        encoder = make_vae(cfg).to(rt.device)  # after the fork: the drawing workers never touch CUDA
        encoder.load_state_dict(vae.state_dict())
        for n, (images, captions) in enumerate(imap(_draw_chunk, jobs)):
            dist = encoder.encode(to_tensor(images).to(rt.device)).latent_dist
            means.append(dist.mean.half().cpu())
            stds.append(dist.std.half().cpu())
            for text in set(captions) - ids_of.keys():
                ids_of[text] = tokenizer([text], padding="max_length", return_tensors="pt").input_ids[0]
            ids.append(torch.stack([ids_of[text] for text in captions]))
            if n % 20 == 0:
                log(f"encoded {n * 256}/{cfg.pool} training images")
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


def training_alphas() -> torch.Tensor:
    """Cumulative alphas of the exported noise schedule (SD1.5's scaled_linear), one per training timestep."""
    start, end, count = (SD15_SCHEDULER[k] for k in ("beta_start", "beta_end", "num_train_timesteps"))
    betas = torch.linspace(start**0.5, end**0.5, count, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE times its loss weight, averaged over the batch."""
    return (F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()


def optimise(opt: torch.optim.Optimizer, params: list, loss: torch.Tensor) -> None:
    """One optimiser step on `loss`, gradients clipped to norm 1."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def draw_batch(cfg: Config, pool: dict, step: int, scale: float, empty: torch.Tensor, alphas: torch.Tensor):
    """Step `step`'s noisy latents, timesteps, caption ids, target and per-sample loss weight. Every random
    number comes from CPU generators seeded by (seed, step), so any device draws the same batch."""
    b, device = cfg.unet_batch, alphas.device
    index = torch.from_numpy(np.random.default_rng([cfg.seed, 3, step]).integers(0, cfg.pool, b))
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    eps = torch.randn(b, 4, 16, 16, generator=gen)
    drop = torch.rand(b, generator=gen) < cfg.caption_dropout
    noise = torch.randn(b, 4, 16, 16, generator=gen)
    noise = (noise + cfg.offset_noise * torch.randn(b, 4, 1, 1, generator=gen)).to(device)
    t = torch.randint(0, len(alphas), (b,), generator=gen).to(device)
    index = index.to(pool["mean"].device)
    x0 = (pool["mean"][index].float() + pool["std"][index].float() * eps.to(device)) * scale
    ids = pool["ids"][index].clone()
    ids[drop.to(device)] = empty
    a = alphas[t].view(b, 1, 1, 1)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = a.sqrt() * noise - (1 - a).sqrt() * x0 if cfg.prediction == "v_prediction" else noise
    return noisy, t, ids, target, loss_weights(alphas[t] / (1 - alphas[t]), cfg)


def _start(cfg: Config, rt: Runtime, path: Path, tokenizer):
    """Models, optimizer, EMA and step: from the checkpoint if there is one, else fresh (or from rt.init)."""
    unet, text = make_unet(cfg), make_text_encoder(cfg, tokenizer)
    state = load(path)
    if state is None and rt.init is not None:
        unet.load_state_dict(load_file(rt.init / "unet" / "diffusion_pytorch_model.safetensors"))
        text.load_state_dict(load_file(rt.init / "text_encoder" / "model.safetensors"))
    if state is not None:
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
    unet.to(rt.device).train()
    text.to(rt.device).train()
    params = list(unet.parameters()) + list(text.parameters())
    fused = {"fused": True} if torch.device(rt.device).type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.0, **fused)
    if state is not None:
        opt.load_state_dict(state["opt"])
        ema = {k: {n: t.to(rt.device) for n, t in v.items()} for k, v in state["ema"].items()}
    else:
        ema = {"unet": unet.state_dict(), "text": text.state_dict()}
        ema = {k: {n: t.detach().clone() for n, t in v.items()} for k, v in ema.items()}
        state = {"step": 0, "elapsed": 0.0}
    return unet, text, opt, ema, state


def train_unet(
    cfg: Config, vae, workdir: Path, max_seconds: float, ckpt_seconds: float, rt: Runtime, log=print
) -> dict:
    """Stage 2. Returns the checkpoint dict (with EMA weights)."""
    tokenizer = build_tokenizer()
    pool = {
        k: v.to(rt.device) if torch.is_tensor(v) else v
        for k, v in encode_pool(vae, tokenizer, cfg, workdir, rt, log).items()
    }
    path = workdir / "unet.pt"
    unet, text, opt, ema, state = _start(cfg, rt, path, tokenizer)
    params = [p for group in opt.param_groups for p in group["params"]]
    pairs = [
        (value, ema[key][name])
        for key, model in (("unet", unet), ("text", text))
        for name, value in model.state_dict().items()
        if value.dtype.is_floating_point
    ]
    alphas = training_alphas().to(rt.device)
    empty = tokenizer([""], padding="max_length", return_tensors="pt").input_ids[0].to(rt.device)
    scale = vae.config.scaling_factor

    def checkpoint() -> dict:
        data = {"unet": unet.state_dict(), "text": text.state_dict(), "opt": opt.state_dict(), "ema": ema}
        data.update(
            step=loop.step, elapsed=loop.elapsed(), config=asdict(replace(cfg, unet_steps=loop.total))
        )
        save_atomic(data, path)
        return data

    loop = StepLoop(
        "unet", state, cfg.unet_steps, pairs, rt, cfg.ema, log, checkpoint, ckpt_seconds, max_seconds
    )
    while loop.going():
        noisy, t, ids, target, weight = draw_batch(cfg, pool, loop.step, scale, empty, alphas)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(loop.step, loop.total, cfg.unet_lr, cfg.warmup)
        loss = weighted_mse(unet(noisy, t, text(ids)[0]).sample, target, weight)
        optimise(opt, params, loss)
        loop.stepped(loss, opt.param_groups[0]["lr"])
    return checkpoint()


def run(
    cfg: Config,
    workdir: Path,
    out: Path | None,
    max_minutes: float,
    ckpt_minutes: float,
    log=print,
    rt: Runtime = Runtime(),
) -> dict:
    """Both stages within a wall-clock budget; returns a summary. Resumes whatever the workdir holds."""
    torch.manual_seed(cfg.seed)
    deadline = time.time() + max_minutes * 60
    vae = train_vae(cfg, workdir, deadline - time.time(), ckpt_minutes * 60, log)
    summary = {"vae_psnr_db": vae_psnr(vae, cfg.seed + 1)}
    log(f"vae reconstruction PSNR {summary['vae_psnr_db']:.2f} dB")
    state = train_unet(cfg, vae, workdir, max(0.0, deadline - time.time()), ckpt_minutes * 60, rt, log)
    summary.update(unet_step=state["step"], unet_seconds=state["elapsed"])
    if out is not None:
        export(
            replace(cfg, **{k: v for k, v in state["config"].items() if k == "unet_steps"}), vae, state, out
        )
        log(f"wrote {out} at unet step {state['step']}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(".train/tiny-shapes"), help="checkpoints")
    parser.add_argument("--out", type=Path, default=None, help="diffusers folder to write at the end")
    parser.add_argument("--preset", choices=("full", "tiny"), default="full", help="tiny = CI smoke size")
    parser.add_argument("--vae-steps", type=int, default=None)
    parser.add_argument("--unet-steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None, help="UNet batch size")
    parser.add_argument("--lr", type=float, default=None, help="UNet peak learning rate")
    parser.add_argument("--warmup", type=int, default=None, help="learning-rate warmup steps")
    parser.add_argument("--pool", type=int, default=None, help="pre-encoded training images")
    parser.add_argument("--max-minutes", type=float, default=1e9, help="stop (and checkpoint) after this")
    parser.add_argument("--fit-minutes", type=float, default=None, help="size the UNet schedule to this")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the training pool")
    parser.add_argument("--init", type=Path, default=None, help="fresh UNet/text weights from this folder")
    parser.add_argument(
        "--export-only", action="store_true", help="write --out from the checkpoints, no training"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    cfg = Config() if args.preset == "full" else TINY
    overrides = {"vae_steps": args.vae_steps, "unet_steps": args.unet_steps, "unet_batch": args.batch}
    overrides.update(unet_lr=args.lr, warmup=args.warmup, pool=args.pool)
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
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
        rt=Runtime(args.device, args.workers, args.fit_minutes, args.init),
    )
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
