"""Write a tiny random-weight SD3 or Flux.1 diffusers folder, for tests and the shipped graphs, and the
same model as ComfyUI-style split files (`--split`).

The transformers follow diffusers' own pipeline tests (`get_dummy_components`), with the real latent
format (16 channels, the families' scale and shift, 8 pixels per latent pixel) and the real tokenizers:
the shipped CLIP and T5 ones (49 408 and 32 128 embedding rows), so no tokenizer folders are written and
loading exercises the offline tokenizers as a real single-file checkpoint does. Text encoders are a few
values wide (CLIP-L 8, CLIP-G 12, T5 24) so the folders stay small: with `--half` the weights are stored
in fp16, about 3 MB (SD3) and 2 MB (Flux). Weights are random: pictures are noise, but every code path of
the family runs in milliseconds. `guidance_embeds` makes a Flux "dev" (distilled guidance), without it a
"schnell"; `sd35` gives the SD3 transformer SD3.5-medium's dual attention and qk norm.

With `--split ROOT` the folder's model is also written as ComfyUI keeps Flux and SD3: the transformer in
ROOT/diffusion_models (Black Forest Labs' layout for Flux, diffusers' for SD3), each text encoder in
ROOT/text_encoders (Hugging Face layout, T5 optionally stored as fp8), the VAE in ROOT/vae (the original
layout, like Flux's ae.safetensors), and the folder's configs as the skeleton ROOT/configs/<name>.

    python -m tools.make_tiny_random_dit sd3|flux [--out DIR] [--seed 0] [--half] [--schnell] [--sd35]
                                                  [--split ROOT]

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


def _inverse(table: dict[str, str]) -> dict[str, str]:
    """diffusers full name -> BFL full name for a flux_keys rename table."""
    inverse = {}
    for bfl, ours in table.items():
        if bfl.endswith(".scale"):
            inverse[ours] = bfl
        else:
            inverse.update({f"{ours}.{s}": f"{bfl}.{s}" for s in ("weight", "bias")})
    return inverse


def bfl_layout(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers Flux transformer's tensors in Black Forest Labs' layout: the inverse of the renames,
    the q/k/v (and single blocks' MLP input) fusions and the final norm's half swap."""
    import torch

    from app.runtime.families import flux_keys

    top = _inverse(flux_keys.RENAMES)
    blocks = {
        "transformer_blocks": ("double_blocks", _inverse(flux_keys.DOUBLE)),
        "single_transformer_blocks": ("single_blocks", _inverse(flux_keys.SINGLE)),
    }
    fusions = {
        "transformer_blocks": {
            f"{n}.{s}": (f"{bfl}.{s}", i)
            for bfl, names in flux_keys.DOUBLE_QKV.items()
            for i, n in enumerate(names)
            for s in ("weight", "bias")
        },
        "single_transformer_blocks": {
            f"{n}.{s}": (f"linear1.{s}", i)
            for i, n in enumerate(flux_keys.SINGLE_FUSED)
            for s in ("weight", "bias")
        },
    }
    out: dict[str, Any] = {}
    fused: dict[str, dict[int, Any]] = {}
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
        elif key.startswith("norm_out.linear."):
            scale, shift = value.chunk(2, dim=0)
            out["final_layer.adaLN_modulation.1." + key.rpartition(".")[2]] = torch.cat([shift, scale])
        else:
            kind, index, rest = key.split(".", 2)
            bfl, renames = blocks[kind]
            if rest in renames:
                out[f"{bfl}.{index}.{renames[rest]}"] = value
            else:
                name, order = fusions[kind][rest]
                fused.setdefault(f"{bfl}.{index}.{name}", {})[order] = value
    for key, pieces in fused.items():
        out[key] = torch.cat([pieces[i] for i in sorted(pieces)])
    return out


def write_split(
    model: Path, root: Path, prefix: str = "", fp8_t5: bool = False, half: bool = False
) -> dict[str, str]:
    """The diffusers folder `model` as split files under the model root `root` (see the module docstring);
    `prefix` goes before the transformer's names (ComfyUI's `model.diffusion_model.`); `half` stores fp16.
    Returns the file names by part ("transformer", "text_encoder", ..., "vae") and the skeleton's name
    ("config")."""
    import shutil

    import torch
    from diffusers import DiffusionPipeline

    from app.runtime import tokenizers
    from tools.ldm_layout import vae_state

    flux = "FluxTransformer2DModel" in (model / "transformer" / "config.json").read_text("utf-8")
    shipped = {
        "tokenizer": tokenizers.clip(),
        "tokenizer_2": tokenizers.clip("!"),
        "tokenizer_3": tokenizers.t5(),
    }
    if flux:
        shipped = {"tokenizer": tokenizers.clip(), "tokenizer_2": tokenizers.t5()}
    torch_dtype = torch.float16 if half else torch.float32
    pipe = DiffusionPipeline.from_pretrained(model, local_files_only=True, torch_dtype=torch_dtype, **shipped)
    for folder in ("diffusion_models", "text_encoders", "vae", "configs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    transformer = pipe.transformer.state_dict()
    transformer = bfl_layout(transformer) if flux else transformer
    names = {"transformer": f"{model.name}.safetensors"}
    _save({prefix + k: v for k, v in transformer.items()}, root / "diffusion_models" / names["transformer"])
    for part in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, part, None)
        if module is None:
            continue
        state = module.state_dict()
        if type(module).__name__ == "CLIPTextModel":  # transformers 5 names it without text_model.
            state = {"text_model." + k: v for k, v in state.items()}
        if type(module).__name__ == "T5EncoderModel":  # ComfyUI's t5xxl files keep only `shared`
            state = {k: v for k, v in state.items() if k != "encoder.embed_tokens.weight"}
            if fp8_t5:
                state = {k: v.to(torch.float8_e4m3fn) for k, v in state.items()}
        names[part] = f"{model.name}-{part}.safetensors"
        _save(state, root / "text_encoders" / names[part])
    names["vae"] = f"{model.name}-ae.safetensors"
    _save(vae_state(pipe.vae), root / "vae" / names["vae"])
    names["config"] = model.name
    target = root / "configs" / model.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model, target, ignore=shutil.ignore_patterns("*.safetensors"))
    return names


COMFY_ENCODERS = {"text_encoder": "clip_l", "text_encoder_2": "clip_g", "text_encoder_3": "t5xxl"}


def write_all_in_one(model: Path, root: Path, name: str, encoders: tuple[str, ...] | None = None) -> Path:
    """The diffusers folder `model` as one checkpoint file, root/checkpoints/`name`, the way ComfyUI saves
    SD3 and Flux: the split transformer under `model.diffusion_model.`, the original-layout VAE under
    `first_stage_model.`, each text encoder (`encoders` names which parts go in; default all) under
    `text_encoders.<clip_l | clip_g | t5xxl>.transformer.`; the skeleton goes to root/configs/<model name>."""
    import shutil
    import tempfile

    flux = "FluxTransformer2DModel" in (model / "transformer" / "config.json").read_text("utf-8")
    with tempfile.TemporaryDirectory() as temp:
        names = write_split(model, Path(temp), prefix="model.diffusion_model.")
        state = _read_all(Path(temp) / "diffusion_models" / names["transformer"])
        vae = _read_all(Path(temp) / "vae" / names["vae"])
        state.update({f"first_stage_model.{k}": v for k, v in vae.items()})
        for part, comfy in COMFY_ENCODERS.items():
            if part in names and (encoders is None or part in encoders):
                comfy = "t5xxl" if flux and part == "text_encoder_2" else comfy
                tensors = _read_all(Path(temp) / "text_encoders" / names[part])
                state.update({f"text_encoders.{comfy}.transformer.{k}": v for k, v in tensors.items()})
        shutil.rmtree(root / "configs" / names["config"], ignore_errors=True)
        shutil.copytree(Path(temp) / "configs" / names["config"], root / "configs" / names["config"])
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    _save(state, root / "checkpoints" / name)
    return root / "checkpoints" / name


def write_lora(model: Path, path: Path, seed: int = 0, rank: int = 2) -> Path:
    """A random kohya-format LoRA (Black Forest Labs' module names, alpha = rank) for the tiny Flux in
    `model`, on every double block's fused q/k/v and every single block's linear1: noise, but it takes
    the same path as a real Flux LoRA from civitai."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weights = _read_all(model / "transformer" / "diffusion_pytorch_model.safetensors")
    state = {}
    for key, value in bfl_layout(weights).items():
        if key.endswith(("img_attn.qkv.weight", "txt_attn.qkv.weight", "linear1.weight")):
            kohya = "lora_unet_" + key.removesuffix(".weight").replace(".", "_")
            state[f"{kohya}.lora_down.weight"] = torch.randn(rank, value.shape[1], generator=generator) * 0.1
            state[f"{kohya}.lora_up.weight"] = torch.randn(value.shape[0], rank, generator=generator) * 0.1
            state[f"{kohya}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    _save({k: v.to(torch.float16) for k, v in state.items()}, path)
    return path


def _read_all(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k).float() for k in handle.keys()}  # noqa: SIM118


def _save(state: dict[str, Any], path: Path) -> None:
    """A .safetensors file written whole or not at all (temporary file, then renamed)."""
    from safetensors.torch import save_file

    temp = path.parent / f".{path.name}.tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, str(temp))
    temp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("sd3", "flux"))
    parser.add_argument("--out", type=Path, help="default: assets/models/tiny-random-<kind>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half", action="store_true", help="store the weights in fp16")
    parser.add_argument("--schnell", action="store_true", help="Flux without guidance embedding")
    parser.add_argument("--sd35", action="store_true", help="SD3.5-medium's dual attention and qk norm")
    parser.add_argument("--split", type=Path, help="also write the model as split files under this root")
    args = parser.parse_args()
    options = {"guidance_embeds": not args.schnell} if args.kind == "flux" else {"sd35": args.sd35}
    out = args.out or MODELS / f"tiny-random-{args.kind}"
    print(write(args.kind, out, args.seed, args.half, **options))
    if args.split:  # with --half the T5 is stored as fp8, as ComfyUI's t5xxl_fp8_e4m3fn
        print(write_split(out, args.split, fp8_t5=args.half, half=args.half))
        if args.kind == "flux":
            print(write_lora(out, args.split / "loras" / f"{out.name}-lora.safetensors"))


if __name__ == "__main__":
    main()
