"""Write a tiny random-weight SD3 or Flux.1 diffusers folder, for tests and the shipped graphs.

The transformers follow diffusers' own pipeline tests (`get_dummy_components`), with the real latent
format (16 channels, the families' scale and shift, 8 pixels per latent pixel) and the real tokenizers:
the shipped CLIP and T5 ones (49 408 and 32 128 embedding rows), so no tokenizer folders are written and
loading exercises the offline tokenizers as a real single-file checkpoint does. Text encoders are a few
values wide (CLIP-L 8, CLIP-G 12, T5 24) so the folders stay small: with `--half` the weights are stored
in fp16, about 3 MB (SD3) and 2 MB (Flux). Weights are random: pictures are noise, but every code path of
the family runs in milliseconds. `guidance_embeds` makes a Flux "dev" (distilled guidance), without it a
"schnell"; `sd35` gives the SD3 transformer SD3.5-medium's dual attention and qk norm.

    python -m tools.make_tiny_random_dit sd3|flux [--out DIR] [--seed 0] [--half] [--schnell] [--sd35]

Imports torch/diffusers inside functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tools.make_tiny_random_model import make_vae, save_folder

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
CLIP_L, CLIP_G, T5_WIDTH = 8, 12, 24
VAES = {"sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159)}
SCHEDULERS = {
    "sd3": {"num_train_timesteps": 1000, "shift": 3.0},
    "flux": {
        "num_train_timesteps": 1000,
        "shift": 3.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
    },
}


def _clip(cls: Any, width: int, seed: int) -> Any:
    import torch
    from transformers import CLIPTextConfig

    torch.manual_seed(seed)
    return cls(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=width,
            intermediate_size=2 * width,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=width,
            hidden_act="gelu",
        )
    ).eval()


def _t5(seed: int) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(
        T5Config(
            vocab_size=32128,
            d_model=T5_WIDTH,
            d_kv=6,
            d_ff=2 * T5_WIDTH,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    ).eval()


def make_components(
    kind: str, seed: int = 0, guidance_embeds: bool = True, sd35: bool = False
) -> dict[str, Any]:
    """The pipeline components of a tiny SD3 or Flux with seeded random weights (see the module docstring)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from app.runtime import tokenizers

    scale, shift = VAES[kind]
    vae = make_vae(seed, scale, channels=(4, 4, 4, 4), latent_channels=16, shift_factor=shift).eval()
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(SCHEDULERS[kind])
    torch.manual_seed(seed)
    if kind == "sd3":
        transformer = SD3Transformer2DModel(
            sample_size=32,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            caption_projection_dim=16,
            joint_attention_dim=T5_WIDTH,
            pooled_projection_dim=CLIP_L + CLIP_G,
            pos_embed_max_size=32,
            dual_attention_layers=(0,) if sd35 else (),
            qk_norm="rms_norm" if sd35 else None,
        ).eval()
        return {
            "transformer": transformer,
            "vae": vae,
            "scheduler": scheduler,
            "text_encoder": _clip(CLIPTextModelWithProjection, CLIP_L, seed + 1),
            "text_encoder_2": _clip(CLIPTextModelWithProjection, CLIP_G, seed + 2),
            "text_encoder_3": _t5(seed + 3),
            "tokenizer": tokenizers.clip("<|endoftext|>"),
            "tokenizer_2": tokenizers.clip("!"),
            "tokenizer_3": tokenizers.t5(),
        }
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=CLIP_L,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    ).eval()
    if not guidance_embeds:
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            {**SCHEDULERS["flux"], "shift": 1.0, "use_dynamic_shifting": False}
        )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder": _clip(CLIPTextModel, CLIP_L, seed + 1),
        "text_encoder_2": _t5(seed + 2),
        "tokenizer": tokenizers.clip("<|endoftext|>"),
        "tokenizer_2": tokenizers.t5(),
    }


def pipeline(kind: str, components: dict[str, Any]) -> Any:
    """StableDiffusion3Pipeline or FluxPipeline over the components."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    return (StableDiffusion3Pipeline if kind == "sd3" else FluxPipeline)(**components)


def write(kind: str, out: Path, seed: int = 0, half: bool = False, **options: Any) -> Path:
    """Save the model as a diffusers folder at `out` (replacing it atomically), without tokenizer folders."""
    import torch

    components = make_components(kind, seed, **options)
    if half:
        for value in components.values():
            if isinstance(value, torch.nn.Module):
                value.to(torch.float16)
    drop = tuple(name for name in components if name.startswith("tokenizer"))
    return save_folder(pipeline(kind, components), out, drop=drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("sd3", "flux"))
    parser.add_argument("--out", type=Path, help="default: assets/models/tiny-random-<kind>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half", action="store_true", help="store the weights in fp16")
    parser.add_argument("--schnell", action="store_true", help="Flux without guidance embedding")
    parser.add_argument("--sd35", action="store_true", help="SD3.5-medium's dual attention and qk norm")
    args = parser.parse_args()
    options = {"guidance_embeds": not args.schnell} if args.kind == "flux" else {"sd35": args.sd35}
    out = args.out or MODELS / f"tiny-random-{args.kind}"
    print(write(args.kind, out, args.seed, args.half, **options))


if __name__ == "__main__":
    main()
