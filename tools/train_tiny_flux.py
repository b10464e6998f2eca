"""Train tiny-shapes-flux: a miniature FLUX.1 dev (double- and single-stream MMDiT with RoPE, guidance
distilled into an embedding) on the tiny-shapes world, written as a diffusers folder that FluxPipeline loads.

FLUX.1 dev was distilled from a CFG teacher; so is this one. The teacher is tiny-shapes-sd3 (same VAE, so
the same latents, and the same rectified-flow velocity, noise - latent): for a noisy training latent at
noise level s and a guidance scale w the student learns the teacher's two-pass CFG velocity
v_u + w (v_c - v_u) in one pass, w going in through Flux's guidance embedding.

- VAE: the tiny-shapes one (64x64x3 -> 16x16x4), so the transformer reads 2x2-packed 16-channel tokens (64).
- CLIP-L slot: the teacher's first CLIP as a CLIPTextModel (its pooled output; frozen).
- T5 slot: a T5EncoderModel with no layers, a learned token embedding and T5's final norm: each token is
  encoded on its own, so the 512-token padding the pipeline feeds is ~500 identical tokens. They stay
  identical through the transformer (text tokens all sit at RoPE position 0), so training attends to a few
  of them with ln(count) added to their logits: the same model, 7x fewer tokens. Order lives in the pooled
  CLIP vector; the T5 tokens are a bag of words.
- Noise levels: logit-normal, shifted as FluxPipeline's dynamic shift shifts a 64-token image.
Every batch is a pure function of (seed, step): a resumed run draws the same data. Checkpoints under --workdir.

    python -m tools.train_tiny_flux --workdir .train/tiny-flux --out assets/models/tiny-shapes-flux --max-minutes 60
    python -m tools.train_tiny_flux --device cuda --workers 15 --batch 1024 --lr 1e-3 --fit-minutes 3 ...  # a GPU

Imports torch, diffusers and transformers; never Qt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from app.runtime import tokenizers
from tools import train_tiny_sd3 as sd3
from tools.tiny_shapes_data import all_combinations, build_tokenizer, caption
from tools.tiny_shapes_model import Config as ShapesConfig
from tools.train_tiny_shapes import Runtime, StepLoop, cosine_lr, encode_pool, optimise

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "assets" / "models" / "tiny-shapes-sd3"
T5_LENGTH = 512  # what the pipeline (and Nodeloom's Flux family) pad T5's tokens to
IMAGE_TOKENS = 64  # 16x16 latents in 2x2 patches


@dataclass(frozen=True)
class Config:
    seed: int = 0
    width: int = 64  # heads * head_dim
    heads: int = 4
    double: int = 2  # double-stream blocks
    single: int = 4  # single-stream blocks
    t5_width: int = 32
    steps: int = 20000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    guidance_low: float = 1.0
    guidance_high: float = 6.0
    ema: float = 0.999
    pool: int = 30000


def flux_shift(tokens: int = IMAGE_TOKENS) -> float:
    """FluxPipeline's dynamic shift for an image of `tokens` patches, as the sigma shift factor e^mu."""
    slope = (1.15 - 0.5) / (4096 - 256)
    return math.exp(0.5 + slope * (tokens - 256))


def make_transformer(cfg: Config):
    from diffusers import FluxTransformer2DModel

    head = cfg.width // cfg.heads
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=cfg.double,
        num_single_layers=cfg.single,
        attention_head_dim=head,
        num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.t5_width,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(head - 2 * (3 * head // 8), 3 * head // 8, 3 * head // 8),
    )


def make_t5(cfg: Config):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizers.t5()), d_model=cfg.t5_width, d_kv=8, d_ff=cfg.t5_width,
                      num_layers=0, num_heads=2, relative_attention_num_buckets=8, dropout_rate=0.0)  # fmt: skip
    torch.manual_seed(cfg.seed + 1)
    return T5EncoderModel(config)


def teacher_models():
    """tiny-shapes-sd3's transformer and CLIPs (eval, frozen) and its first CLIP as Flux's CLIP-L slot."""
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    def frozen(model):
        return model.eval().requires_grad_(False)

    transformer = frozen(SD3Transformer2DModel.from_pretrained(TEACHER, subfolder="transformer"))
    transformer.set_attn_processor(sd3.OneZeroForMany())
    clips = [
        frozen(CLIPTextModelWithProjection.from_pretrained(TEACHER, subfolder=name))
        for name in ("text_encoder", "text_encoder_2")
    ]
    clip_l = frozen(CLIPTextModel.from_pretrained(TEACHER, subfolder="text_encoder"))
    return transformer, clips, clip_l


@torch.no_grad()
def caption_table(clip_tokenizer, clips, clip_l) -> dict:
    """Per caption (every combination, then the empty one): its CLIP ids (to find a batch's captions), the
    teacher's context and pooled vector, Flux's pooled CLIP-L vector, and the collapsed T5 ids and logit
    biases (a pad column stands for its share of the pipeline's padding)."""
    t5_tokenizer = tokenizers.t5()
    texts = [caption(*c) for c in all_combinations()] + [""]
    clip_ids = clip_tokenizer(texts, padding="max_length", return_tensors="pt").input_ids
    context, pooled = sd3.encode_text(clips, clip_ids, zeros=1)
    words = [t5_tokenizer(text).input_ids for text in texts]  # ends with </s>
    length = max(len(w) for w in words) + 1
    ids = torch.full((len(texts), length), t5_tokenizer.pad_token_id)
    bias = torch.zeros(len(texts), length)
    for row, found in enumerate(words):
        ids[row, : len(found)] = torch.tensor(found)
        pads = length - len(found)
        bias[row, len(found) :] = math.log((T5_LENGTH - len(found)) / pads)
    return {
        "clip_ids": clip_ids,
        "context": context,
        "pooled": pooled,
        "flux_pooled": clip_l(clip_ids).pooler_output,
        "t5_ids": ids,
        "t5_bias": bias,
    }


def row_of(table: dict, ids: torch.Tensor) -> torch.Tensor:
    """The caption rows of a batch of CLIP ids."""
    return (ids[:, None, :] == table["clip_ids"][None]).all(-1).float().argmax(1)


def image_ids(device) -> torch.Tensor:
    rows, columns = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    return torch.stack([torch.zeros_like(rows), rows, columns], -1).reshape(-1, 3).float().to(device)


def student_velocity(transformer, t5, table: dict, rows, noisy, sigma, guidance) -> torch.Tensor:
    """The student's packed velocity for unpacked `noisy` latents, the collapsed T5 padding weighted."""
    from app.runtime.families.flux import pack

    ids = table["t5_ids"][rows]
    mask = torch.zeros(len(rows), 1, 1, ids.shape[1] + IMAGE_TOKENS, device=noisy.device)
    mask[:, 0, 0, : ids.shape[1]] = table["t5_bias"][rows]
    return transformer(
        hidden_states=pack(noisy),
        encoder_hidden_states=t5(ids).last_hidden_state,
        pooled_projections=table["flux_pooled"][rows],
        timestep=sigma,
        guidance=guidance,
        txt_ids=torch.zeros(ids.shape[1], 3, device=noisy.device),
        img_ids=image_ids(noisy.device),
        joint_attention_kwargs={"attention_mask": mask},
    ).sample


@torch.no_grad()
def teacher_velocity(teacher, table: dict, rows, noisy, sigma, guidance) -> torch.Tensor:
    """tiny-shapes-sd3's CFG velocity at scale `guidance` (one batched cond + uncond pass), packed."""
    from app.runtime.families.flux import pack

    empty = torch.full_like(rows, len(table["clip_ids"]) - 1)
    both = torch.cat([rows, empty])
    pred = teacher(
        hidden_states=torch.cat([noisy, noisy]),
        encoder_hidden_states=table["context"][both],
        pooled_projections=table["pooled"][both],
        timestep=torch.cat([sigma, sigma]) * 1000,
    ).sample
    cond, uncond = pred.chunk(2)
    return pack(uncond + guidance.view(-1, 1, 1, 1) * (cond - uncond))


def train(cfg: Config, workdir: Path, max_seconds: float, ckpt_seconds: float, log=print, rt=None) -> dict:
    """Train (or resume) under `workdir`; `rt` says where (device, pool-drawing workers) and may size the
    cosine schedule to `rt.fit_minutes` from the speed of the first 100 steps. Returns the last checkpoint
    (EMA weights under "ema")."""
    from diffusers import AutoencoderKL

    rt = rt or Runtime()
    tokenizer = build_tokenizer()
    vae = AutoencoderKL.from_pretrained(sd3.VAE, local_files_only=True).eval().requires_grad_(False)
    pool = encode_pool(vae, tokenizer, ShapesConfig(seed=cfg.seed, pool=cfg.pool), workdir, rt, log)
    pool = {k: v.to(rt.device) if torch.is_tensor(v) else v for k, v in pool.items()}
    teacher, clips, clip_l = teacher_models()
    table = {k: v.to(rt.device) for k, v in caption_table(tokenizer, clips, clip_l).items()}
    teacher.to(rt.device)
    torch.manual_seed(cfg.seed)
    modules = {"transformer": make_transformer(cfg).to(rt.device), "t5": make_t5(cfg).to(rt.device)}
    params = [p for m in modules.values() for p in m.parameters()]
    fused = {"fused": True} if torch.device(rt.device).type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, **fused)
    saved = sd3.Checkpoint(workdir / "flux.pt", modules, opt, rt.device)
    draw = sd3.Config(seed=cfg.seed, batch=cfg.batch, pool=cfg.pool, caption_dropout=0.0, shift=flux_shift())
    empty, span = table["clip_ids"][-1], cfg.guidance_high - cfg.guidance_low
    loop = StepLoop("flux", saved.state, cfg.steps, saved.pairs, rt, cfg.ema, log,
                    lambda: saved.save(loop, cfg), ckpt_seconds, max_seconds)  # fmt: skip
    while loop.going():
        noisy, t, ids, _ = sd3.draw_batch(draw, pool, loop.step, vae.config.scaling_factor, empty)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_037 + loop.step)
        guidance = (cfg.guidance_low + span * torch.rand(cfg.batch, generator=gen)).to(rt.device)
        rows, sigma = row_of(table, ids), t / 1000
        target = teacher_velocity(teacher, table, rows, noisy, sigma, guidance)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(loop.step, loop.total, cfg.lr, cfg.warmup)
        pred = student_velocity(modules["transformer"], modules["t5"], table, rows, noisy, sigma, guidance)
        optimise(opt, params, loss := torch.nn.functional.mse_loss(pred, target))
        loop.stepped(loss, opt.param_groups[0]["lr"])
    return saved.save(loop, cfg)


def export(cfg: Config, state: dict, out: Path) -> Path:
    """The EMA weights as a FluxPipeline folder (fp32 safetensors), replacing `out` whole."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline

    from tools.make_tiny_random_model import save_folder

    transformer, t5 = make_transformer(cfg), make_t5(cfg)
    transformer.load_state_dict(state["ema"]["transformer"])
    t5.load_state_dict(state["ema"]["t5"])
    vae = AutoencoderKL.from_pretrained(sd3.VAE, local_files_only=True)
    vae.register_to_config(shift_factor=0.0)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        time_shift_type="exponential",
    )  # fmt: skip  (FLUX.1 dev's scheduler config)
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=teacher_models()[2],
        tokenizer=build_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=tokenizers.t5(),
        transformer=transformer,
    )
    return save_folder(pipe, out)


def main(argv: list[str] | None = None) -> int:
    return sd3.main_for(argv, __doc__, Path(".train/tiny-flux"), "flux.pt", Config, train, export)


if __name__ == "__main__":
    raise SystemExit(main())
