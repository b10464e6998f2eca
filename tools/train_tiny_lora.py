"""Train the example LoRA of the embedded model: tiny-shapes-outline, which draws every shape as an outline.

The base model (assets/models/tiny-shapes) stays frozen; rank-R LoRA layers on the UNet's attention,
projections and feed-forward, and on the text encoder's attention, learn from shapes drawn hollow
(tools/tiny_shapes_data.random_batch with `outline`) under the same captions, with the base model's own
objective (v-prediction, min-SNR weights). The result is written in kohya/A1111's key format (what
artists download), so the shipped graph exercises the same converter as their files. Seeded; resumes from
--workdir; `--eval` measures how hollow the shapes come out through graphs/lora.json at several strengths
(solidity: shape-coloured pixels / the area they enclose; 1 = filled).

    python -m tools.train_tiny_lora --steps 1200 --out assets/models/loras/tiny-shapes-outline.safetensors
    python -m tools.train_tiny_lora --eval 24 --strengths 0,0.5,1,1.5 --sheet docs/lora-outline-strengths.png

Imports torch, diffusers and peft; never Qt.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from app.files import ASSETS
from app.fsutil import atomic_write_bytes
from nodes.shapes import COLOURS
from tools.tiny_shapes_data import random_batch
from tools.tiny_shapes_model import Config, save_atomic, to_tensor

BASE = ASSETS / "models" / "tiny-shapes"
OUT = ASSETS / "models" / "loras" / "tiny-shapes-outline.safetensors"
OUTLINE = 0.05  # edge thickness as a fraction of the side (about 3 pixels of 64)
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _models(rank: int):
    """The frozen embedded model with fresh LoRA layers on its UNet and text encoder (seeded)."""
    from peft import LoraConfig

    from tools.train_tiny_controlnet import load_frozen

    unet, vae, text, tokenizer, _ = load_frozen(BASE)
    torch.manual_seed(0)
    for model, targets in ((unet, UNET_TARGETS), (text, TEXT_TARGETS)):
        model.add_adapter(
            LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights="gaussian")
        )
    return unet, text, vae, tokenizer


@torch.no_grad()
def pool(vae, tokenizer, count: int, seed: int) -> dict[str, torch.Tensor]:
    """Outline pictures as latents (mean and std of the posterior) and their caption ids, seeded by chunk."""
    means, stds, ids = [], [], []
    for chunk in range(0, count, 256):
        images, samples = random_batch(
            np.random.default_rng([seed, 7, chunk]), min(256, count - chunk), outline=OUTLINE
        )
        dist = vae.encode(to_tensor(images)).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
        captions = [s.caption for s in samples]
        ids.append(tokenizer(captions, padding="max_length", return_tensors="pt").input_ids)
    return {"mean": torch.cat(means), "std": torch.cat(stds), "ids": torch.cat(ids)}


def train(
    steps: int,
    batch: int,
    rank: int,
    lr: float,
    workdir: Path,
    seed: int = 0,
    pool_size: int = 4096,
    log=print,
):
    """The LoRA-wrapped UNet and text encoder after `steps` (resuming from workdir/lora.pt)."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    from tools.train_tiny_shapes import cosine_lr, loss_weights, optimise, training_alphas, weighted_mse

    unet, text, vae, tokenizer = _models(rank)
    data = pool(vae, tokenizer, pool_size, seed)
    params = [p for m in (unet, text) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    path = workdir / "lora.pt"
    step = 0
    if path.is_file():
        state = torch.load(path, weights_only=True)
        set_peft_model_state_dict(unet, state["unet"])
        set_peft_model_state_dict(text, state["text"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    cfg = Config()
    alphas = training_alphas()
    count = len(alphas)
    scale = vae.config.scaling_factor
    unet.train()
    text.train()
    started, losses = time.time(), []
    while step < steps:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        index = torch.randint(0, len(data["ids"]), (batch,), generator=gen)
        x0 = (
            data["mean"][index] + data["std"][index] * torch.randn(data["mean"][index].shape, generator=gen)
        ) * scale
        noise = torch.randn(x0.shape, generator=gen) + cfg.offset_noise * torch.randn(
            batch, 4, 1, 1, generator=gen
        )
        t = torch.randint(0, count, (batch,), generator=gen)
        a = alphas[t].view(batch, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v-prediction, as the base model
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, 50)
        pred = unet(noisy, t, text(data["ids"][index])[0]).sample
        loss = weighted_mse(pred, target, loss_weights(alphas[t] / (1 - alphas[t]), cfg))
        optimise(opt, params, loss)
        step += 1
        losses.append(loss.item())
        if step % 50 == 0 or step == steps:
            log(
                f"step {step}/{steps} loss {np.mean(losses[-50:]):.4f} {len(losses) / (time.time() - started):.2f} steps/s"
            )
            workdir.mkdir(parents=True, exist_ok=True)
            state = {
                "unet": get_peft_model_state_dict(unet, save_embedding_layers=False),
                "text": get_peft_model_state_dict(text, save_embedding_layers=False),
            }
            save_atomic({**state, "opt": opt.state_dict(), "step": step}, path)
    return unet, text


def kohya_state(unet, text, rank: int) -> dict[str, torch.Tensor]:
    """The trained layers in kohya/A1111 keys (lora_unet_*, lora_te_*, with alpha = rank: scale 1)."""
    from peft.utils import get_peft_model_state_dict

    state = {}
    for prefix, model in (("lora_unet_", unet), ("lora_te_text_model_", text)):
        for key, value in get_peft_model_state_dict(model, save_embedding_layers=False).items():
            module, _, kind = key.rpartition(".lora_")
            stem = prefix + module.replace(".", "_")
            state[f"{stem}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = (
                value.detach().contiguous()
            )
            state[f"{stem}.alpha"] = torch.tensor(float(rank))
    return state


def solidity(image: np.ndarray, colour: str) -> float:
    """Shape-coloured pixels / the area they enclose: about 1 for a filled shape, well below for an outline."""
    pixels = image.astype(np.float32)
    fore = np.asarray(COLOURS[colour], np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    back = np.median(border, axis=0)
    shape = (((pixels - fore) ** 2).sum(-1) < ((pixels - back) ** 2).sum(-1)).astype(np.uint8)
    if shape.sum() < 20:
        return float("nan")
    outside = (1 - shape).copy()
    mask = np.zeros((shape.shape[0] + 2, shape.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, mask, (0, 0), 2)
    enclosed = (outside != 2).sum()
    return float(shape.sum() / max(1, enclosed))


def render(picks, strengths, seed: int) -> dict[float, list[np.ndarray]]:
    """Pictures of (colour, shape, background) picks through graphs/lora.json at each strength."""
    from app.engine.context import RunSettings
    from app.engine.executor import Executor
    from app.graph import serialize
    from app.registry import default_registry
    from tools.tiny_shapes_data import caption

    registry = default_registry()
    graph = serialize.load(Path(__file__).resolve().parents[1] / "graphs" / "lora.json", registry)
    executor = Executor(registry)
    pictures: dict[float, list[np.ndarray]] = {}
    for strength in strengths:
        pictures[strength] = []
        for index, pick in enumerate(picks):
            graph.set_param("prompt", "text", caption(*pick))
            graph.set_param("sampler", "seed", seed + index)
            graph.set_param("lora", "strength_model", strength)
            graph.set_param("lora", "strength_clip", strength)
            out = executor.run(graph, ["decode"], RunSettings(device="cpu")).outputs["decode"]["image"]
            pictures[strength].append((out[0] * 255).round().astype(np.uint8))
    return pictures


def evaluate(count: int, strengths=(0.0, 0.5, 1.0), seed: int = 500, sheet: Path | None = None):
    """Mean solidity of `count` fresh prompt/seed pairs at each strength; `sheet`: also a PNG with one row
    per strength (shown 2x)."""
    from tools.tiny_shapes_data import all_combinations

    rng = np.random.default_rng(seed)
    combos = all_combinations()
    picks = [combos[int(i)] for i in rng.integers(len(combos), size=count)]
    pictures = render(picks, strengths, seed)
    if sheet is not None:
        rows = [np.concatenate(images, axis=1) for images in pictures.values()]
        big = cv2.resize(np.concatenate(rows), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        ok, data = cv2.imencode(".png", cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        atomic_write_bytes(sheet, data.tobytes())
    return {
        strength: float(
            np.nanmean([solidity(image, pick[0]) for image, pick in zip(images, picks, strict=True)])
        )
        for strength, images in pictures.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--workdir", type=Path, default=Path(".train/tiny-lora"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--eval", type=int, default=0, help="only evaluate the shipped LoRA on N pairs")
    parser.add_argument("--sheet", type=Path, help="with --eval: write the pictures, a row per strength")
    parser.add_argument("--strengths", default="0,0.5,1", help="with --eval: comma-separated strengths")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.eval:
        strengths = tuple(float(s) for s in args.strengths.split(","))
        for strength, value in evaluate(args.eval, strengths, sheet=args.sheet).items():
            print(f"strength {strength:.2f}: mean solidity {value:.3f}", flush=True)
        return 0
    from safetensors.torch import save

    unet, text = train(
        args.steps, args.batch, args.rank, args.lr, args.workdir, log=lambda m: print(m, flush=True)
    )
    metadata = {"ss_base_model_version": "tiny-shapes", "ss_network_dim": str(args.rank)}
    atomic_write_bytes(args.out, save(kohya_state(unet, text, args.rank), metadata=metadata))
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
