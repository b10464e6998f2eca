"""Write a tiny random-weight SDXL (base or refiner) diffusers folder, for tests and the shipped graph.

The UNet follows diffusers' own SDXL pipeline tests (`get_dummy_components`: two levels, "text_time" added
conditioning, linear projections); the two text encoders get different widths (32 and 48, projection 40)
so nothing can mix them up unnoticed (single-file loading tells CLIP-L from CLIP-G by width). By default the
tokenizers are the byte-level test ones written into the folder (small); `clip_vocab=True` uses the shipped
CLIP tokenizers instead (49 408 tokens, ~10 MB of embeddings) and writes no tokenizer folders, so loading
exercises the offline tokenizers exactly as a real single-file checkpoint does. The weights are random:
pictures are noise, but every SDXL code path runs in milliseconds.

    python -m tools.make_tiny_random_sdxl [--out assets/models/tiny-random-sdxl] [--seed 0] [--refiner]

Imports torch/diffusers inside functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tools.make_tiny_random_model import make_tokenizer, make_vae, save_folder

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "models" / "tiny-random-sdxl"
TEXT_WIDTHS = (32, 48)
PROJECTION = 40
TIME_DIM = 8
SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}


def _text_encoder(cls: Any, width: int, tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import CLIPTextConfig

    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(seed)
    return cls(
        CLIPTextConfig(
            bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
            eos_token_id=end,
            pad_token_id=end,
            hidden_size=width,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            projection_dim=PROJECTION,
            hidden_act="gelu",
        )
    )


def make_components(seed: int = 0, refiner: bool = False, clip_vocab: bool = False) -> dict[str, Any]:
    """The pipeline components with seeded random weights (tokenizers too; see the module docstring)."""
    import torch
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from app.runtime import tokenizers

    if clip_vocab:
        tokenizer, tokenizer_2 = tokenizers.clip("<|endoftext|>"), tokenizers.clip("!")
    else:
        tokenizer, tokenizer_2 = make_tokenizer(), make_tokenizer()
    text_width = TEXT_WIDTHS[1] if refiner else sum(TEXT_WIDTHS)
    time_ids = 5 if refiner else 6
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_DIM,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=time_ids * TIME_DIM + PROJECTION,
        cross_attention_dim=text_width,
        norm_num_groups=1,
    )
    vae = make_vae(seed, scaling_factor=0.13025)
    components = {
        "unet": unet,
        "vae": vae,
        "scheduler": EulerDiscreteScheduler.from_config(SCHEDULER),
        "text_encoder": None if refiner else _text_encoder(CLIPTextModel, TEXT_WIDTHS[0], tokenizer, seed),
        "text_encoder_2": _text_encoder(CLIPTextModelWithProjection, TEXT_WIDTHS[1], tokenizer_2, seed + 1),
        "tokenizer": None if refiner else tokenizer,
        "tokenizer_2": tokenizer_2,
    }
    for module in (unet, vae, components["text_encoder"], components["text_encoder_2"]):
        if module is not None:
            module.eval()
    return components


def pipeline(components: dict[str, Any], refiner: bool = False) -> Any:
    """The diffusers pipeline of the components: StableDiffusionXLPipeline, or the refiner's img2img one."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    if refiner:
        return StableDiffusionXLImg2ImgPipeline(
            **components, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False
        )
    return StableDiffusionXLPipeline(**components)


def write(out: Path, seed: int = 0, refiner: bool = False, clip_vocab: bool = False) -> Path:
    """Save the model as a diffusers folder at `out` (replacing it atomically)."""
    pipe = pipeline(make_components(seed, refiner, clip_vocab), refiner)
    # with clip_vocab, no tokenizer folders: the loader must use the shipped ones
    return save_folder(pipe, out, drop=("tokenizer", "tokenizer_2") if clip_vocab else ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refiner", action="store_true", help="the refiner's layout (CLIP-G only)")
    args = parser.parse_args()
    print(write(args.out, args.seed, args.refiner))


if __name__ == "__main__":
    main()
