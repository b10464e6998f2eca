"""Train tiny-shapes-sd3: a miniature Stable Diffusion 3 (MMDiT, rectified flow) on the tiny-shapes world, written
as a diffusers folder that StableDiffusion3Pipeline loads.

- VAE: the embedded tiny-shapes model's (64x64x3 -> 16x16x4), frozen; its config gains shift_factor 0.
- Text: two tiny CLIPTextModelWithProjection (the "L" and "G" slots, the tiny-shapes tokenizer), read at the
  penultimate layer side by side and zero-padded to the context width, pooled = both projections; no T5: 256
  zero tokens follow, exactly as the pipeline (and Nodeloom's SD3 family) feed a T5-less SD3. The exported
  folder carries a "silent" T5 whose output is exactly those zeros, so a plain from_pretrained loads it.
- Transformer: SD3Transformer2DModel on 2x2 patches (64 image tokens), trained jointly with the text encoders
  on the flow-matching objective (velocity = noise - latent, x_t = (1 - s) x0 + s noise, s logit-normal and
  shifted as the exported scheduler), 10 % caption dropout for CFG, EMA weights for export.
Every batch is a pure function of (seed, step): a resumed run draws the same data. Checkpoints under --workdir.

    python -m tools.train_tiny_sd3 --workdir .train/tiny-sd3 --out assets/models/tiny-shapes-sd3 --max-minutes 60
    python -m tools.train_tiny_sd3 --device cuda --workers 15 --batch 1024 --lr 1e-3 --fit-minutes 3 ...  # a GPU

Imports torch, diffusers and transformers; never Qt.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.runtime import tokenizers
from tools.tiny_shapes_data import build_tokenizer
from tools.tiny_shapes_model import Config as ShapesConfig
from tools.tiny_shapes_model import load, make_text_encoder, save_atomic
from tools.train_tiny_shapes import Runtime, StepLoop, cosine_lr, encode_pool, optimise

ROOT = Path(__file__).resolve().parents[1]
VAE = ROOT / "assets" / "models" / "tiny-shapes" / "vae"
T5_TOKENS = 256  # the pipeline's max_sequence_length: zeros stand in for T5


@dataclass(frozen=True)
class Config:
    seed: int = 0
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 2
    width: int = 64  # heads * head_dim
    heads: int = 4
    layers: int = 4
    steps: int = 26000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    shift: float = 1.0
    caption_dropout: float = 0.1
    ema: float = 0.999
    pool: int = 30000

    @property
    def context(self) -> int:
        return 2 * self.text_hidden


def make_transformer(cfg: Config):
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=cfg.layers,
        attention_head_dim=cfg.width // cfg.heads,
        num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.context,
        caption_projection_dim=cfg.width,
        pooled_projection_dim=cfg.context,
        pos_embed_max_size=16,
    )


def encode_text(encoders, ids: torch.Tensor, zeros: int = T5_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """(context: CLIP L | G penultimate states + `zeros` zero tokens for T5, pooled: both projections)."""
    states, pooled = [], []
    for encoder in encoders:
        out = encoder(ids, output_hidden_states=True)
        states.append(out.hidden_states[-2])
        pooled.append(out.text_embeds)
    clip = torch.cat(states, dim=-1)
    return torch.cat([clip, clip.new_zeros(clip.shape[0], zeros, clip.shape[-1])], dim=1), torch.cat(
        pooled, dim=-1
    )


class OneZeroForMany:
    """Joint attention in which the last context token stands for T5's 256 zero tokens. They are identical
    all the way through (each token is processed alone outside attention), so attending to 256 copies of a
    key is attending to one with ln(256) added to its logit: the same model, 2.5x fewer tokens to train on."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        batch, image_tokens = hidden_states.shape[:2]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        parts = [(attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k, hidden_states)]
        parts.append((attn.add_q_proj, attn.add_k_proj, attn.add_v_proj, attn.norm_added_q, attn.norm_added_k,
                      encoder_hidden_states))  # fmt: skip
        qs, ks, vs = [], [], []
        for to_q, to_k, to_v, norm_q, norm_k, x in parts:
            q, k = heads(to_q(x)), heads(to_k(x))
            qs.append(norm_q(q) if norm_q is not None else q)
            ks.append(norm_k(k) if norm_k is not None else k)
            vs.append(heads(to_v(x)))
        q, k, v = torch.cat(qs, 2), torch.cat(ks, 2), torch.cat(vs, 2)
        bias = torch.zeros(k.shape[2], dtype=q.dtype, device=q.device)
        bias[-1] = float(np.log(T5_TOKENS))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.view(1, 1, 1, -1))
        out = out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[-1])
        image, context = out[:, :image_tokens], out[:, image_tokens:]
        if not attn.context_pre_only:
            context = attn.to_add_out(context)
        return attn.to_out[1](attn.to_out[0](image)), context


def sigmas(cfg: Config, gen: torch.Generator, count: int) -> torch.Tensor:
    """Logit-normal noise levels (SD3's training density), shifted as the exported scheduler shifts."""
    u = torch.sigmoid(torch.randn(count, generator=gen))
    return cfg.shift * u / (1 + (cfg.shift - 1) * u)


def draw_batch(cfg: Config, pool: dict, step: int, scale: float, empty: torch.Tensor):
    """Step `step`'s noisy latents, timesteps, caption ids and velocity target; seeded by (seed, step) from
    CPU generators, so any device (the pool's) draws the same batch."""
    b, device = cfg.batch, pool["mean"].device
    index = torch.from_numpy(np.random.default_rng([cfg.seed, 13, step]).integers(0, cfg.pool, b)).to(device)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_033 + step)
    eps = torch.randn(b, 4, 16, 16, generator=gen).to(device)
    drop = (torch.rand(b, generator=gen) < cfg.caption_dropout).to(device)
    noise = torch.randn(b, 4, 16, 16, generator=gen).to(device)
    s = sigmas(cfg, gen, b).view(b, 1, 1, 1).to(device)
    x0 = (pool["mean"][index].float() + pool["std"][index].float() * eps) * scale
    ids = pool["ids"][index].clone()
    ids[drop] = empty
    return (1 - s) * x0 + s * noise, s.flatten() * 1000, ids, noise - x0


def _models(cfg: Config, tokenizer):
    torch.manual_seed(cfg.seed)
    return (
        make_transformer(cfg),
        make_text_encoder(cfg, tokenizer, True),
        make_text_encoder(cfg, tokenizer, True),
    )


def train(
    cfg: Config, workdir: Path, max_seconds: float, ckpt_seconds: float, log=print, rt: Runtime | None = None
) -> dict:
    """Train (or resume) under `workdir`; `rt` says where (device, pool-drawing workers) and may size the
    cosine schedule to `rt.fit_minutes` from the speed of the first 100 steps."""
    from diffusers import AutoencoderKL

    rt = rt or Runtime()
    tokenizer = build_tokenizer()
    vae = AutoencoderKL.from_pretrained(VAE, local_files_only=True).eval().requires_grad_(False)
    shapes = ShapesConfig(seed=cfg.seed, pool=cfg.pool)
    pool = {
        k: v.to(rt.device) if torch.is_tensor(v) else v
        for k, v in encode_pool(vae, tokenizer, shapes, workdir, rt, log).items()
    }
    path = workdir / "sd3.pt"
    transformer, clip_l, clip_g = _models(cfg, tokenizer)
    modules = {"transformer": transformer, "clip_l": clip_l, "clip_g": clip_g}
    for module in modules.values():
        module.to(rt.device)
    params = [p for m in modules.values() for p in m.parameters()]
    fused = {"fused": True} if torch.device(rt.device).type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, **fused)
    saved = Checkpoint(path, modules, opt, rt.device)
    for module in modules.values():
        module.train()
    transformer.set_attn_processor(OneZeroForMany())
    empty = tokenizer([""], padding="max_length", return_tensors="pt").input_ids[0].to(rt.device)
    scale = vae.config.scaling_factor
    loop = StepLoop("sd3", saved.state, cfg.steps, saved.pairs, rt, cfg.ema, log,
                    lambda: saved.save(loop, cfg), ckpt_seconds, max_seconds)  # fmt: skip
    while loop.going():
        noisy, t, ids, target = draw_batch(cfg, pool, loop.step, scale, empty)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(loop.step, loop.total, cfg.lr, cfg.warmup)
        context, pooled = encode_text((clip_l, clip_g), ids, zeros=1)
        pred = transformer(
            hidden_states=noisy, encoder_hidden_states=context, pooled_projections=pooled, timestep=t
        ).sample
        optimise(opt, params, loss := F.mse_loss(pred, target))
        loop.stepped(loss, opt.param_groups[0]["lr"])
    return saved.save(loop, cfg)


class Checkpoint:
    """A DiT trainer's checkpoint file: its modules' weights (by name), the optimizer, the EMA weights, the
    step, the training time and the config. Made from `path` when it exists (the modules and `opt` are
    loaded from it), else a fresh start whose EMA is a copy of the modules' weights."""

    def __init__(self, path: Path, modules: dict[str, torch.nn.Module], opt, device) -> None:
        self.path, self.modules, self.opt = path, modules, opt
        state = load(path)
        if state is None:
            self.state = {"step": 0, "elapsed": 0.0}
            self.ema = {
                n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in modules.items()
            }
        else:
            for name, module in modules.items():
                module.load_state_dict(state[name])
            opt.load_state_dict(state["opt"])
            self.state = state
            self.ema = {n: {k: v.to(device) for k, v in m.items()} for n, m in state["ema"].items()}
        self.pairs = [  # (live weight, its average) for StepLoop's EMA update
            (v, self.ema[n][k])
            for n, m in modules.items()
            for k, v in m.state_dict().items()
            if v.dtype.is_floating_point
        ]

    def save(self, loop: StepLoop, cfg) -> dict:
        """Write the checkpoint (atomically) as the loop stands; the config's step count is the loop's."""
        data = {n: m.state_dict() for n, m in self.modules.items()}
        data.update(opt=self.opt.state_dict(), ema=self.ema, step=loop.step, elapsed=loop.elapsed())
        data.update(config=asdict(replace(cfg, steps=loop.total)))
        save_atomic(data, self.path)
        return data


def export(cfg: Config, state: dict, out: Path) -> Path:
    """The EMA weights as a StableDiffusion3Pipeline folder (fp32 safetensors), replacing `out` whole."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from tools.make_tiny_random_model import save_folder

    tokenizer = build_tokenizer()
    transformer, clip_l, clip_g = _models(cfg, tokenizer)
    for name, module in (("transformer", transformer), ("clip_l", clip_l), ("clip_g", clip_g)):
        module.load_state_dict(state["ema"][name])
    vae = AutoencoderKL.from_pretrained(VAE, local_files_only=True)
    vae.register_to_config(shift_factor=0.0)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=cfg.shift),
        vae=vae,
        text_encoder=clip_l,
        tokenizer=tokenizer,
        text_encoder_2=clip_g,
        tokenizer_2=tokenizer,
        text_encoder_3=silent_t5(cfg),
        tokenizer_3=tokenizers.t5(),
    )
    return save_folder(pipe, out)


def silent_t5(cfg: Config):
    """A one-layer T5 whose output is exactly zero (its final norm's weight is 0): what the pipeline feeds
    when T5 is absent, as the model was trained. diffusers 0.42 loads an SD3 folder with a plain
    from_pretrained only when it has a text_encoder_3; this keeps the folder loadable and the model T5-free."""
    import torch
    from transformers import T5Config, T5EncoderModel

    tokenizer = tokenizers.t5()
    config = T5Config(vocab_size=len(tokenizer), d_model=cfg.context, d_kv=8, d_ff=cfg.context, num_layers=1,
                      num_heads=2, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu")  # fmt: skip
    torch.manual_seed(cfg.seed)
    model = T5EncoderModel(config).eval()
    with torch.no_grad():
        model.encoder.final_layer_norm.weight.zero_()
    return model


def main(argv: list[str] | None = None) -> int:
    return main_for(argv, __doc__, Path(".train/tiny-sd3"), "sd3.pt", Config, train, export)


def main_for(argv, doc: str, workdir: Path, checkpoint: str, config: type, train, export) -> int:
    """The command line of a DiT trainer (this one's and train_tiny_flux's): train or resume under --workdir
    (or only --export-only the last `checkpoint`), then write the diffusers folder to --out."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=workdir)
    parser.add_argument("--out", type=Path, help="write the diffusers folder here when done")
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--ckpt-minutes", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=config.steps)
    parser.add_argument("--batch", type=int, default=config.batch)
    parser.add_argument("--lr", type=float, default=config.lr, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=config.warmup, help="learning-rate warmup steps")
    parser.add_argument("--pool", type=int, default=config.pool, help="pre-encoded training images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the training pool")
    parser.add_argument("--fit-minutes", type=float, default=None, help="size the schedule to this")
    parser.add_argument("--export-only", action="store_true", help="write --out from the last checkpoint")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    cfg = config(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup, pool=args.pool)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.export_only:
        state = load(args.workdir / checkpoint)
        if state is None:
            raise SystemExit(f"no checkpoint in {args.workdir}")
    else:
        rt = Runtime(args.device, args.workers, args.fit_minutes)
        log = lambda m: print(m, flush=True)  # noqa: E731
        state = train(cfg, args.workdir, args.max_minutes * 60, args.ckpt_minutes * 60, log, rt)
    if args.out:
        print(export(cfg, state, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
