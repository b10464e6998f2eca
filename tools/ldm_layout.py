"""Write a diffusers SD1.x or SDXL model as one original-layout (LDM / A1111) .safetensors file, for loader tests.

Our own mapping of the public key layout of the original Stable Diffusion checkpoints: UNet under
`model.diffusion_model.`, VAE under `first_stage_model.`, CLIP under `cond_stage_model.transformer.text_model.`;
SDXL's text encoders under `conditioner.embedders.0.transformer.text_model.` (CLIP-L, Hugging Face layout)
and `conditioner.embedders.1.model.` (CLIP-G, OpenCLIP layout: fused q/k/v, transposed text_projection);
the refiner has only CLIP-G, as embedder 0.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def unet_key(key: str, layers: int) -> str:
    parts = key.split(".")
    top = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
    }
    for old, new in top.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            return f"input_blocks.{(block + 1) * (layers + 1)}.0.op." + ".".join(parts[5:])
        index = 1 + block * (layers + 1) + int(parts[3])
        rest = ".".join(parts[4:])
        return (
            f"input_blocks.{index}.0.{_rename(rest, RESNET)}"
            if kind == "resnets"
            else f"input_blocks.{index}.1.{rest}"
        )
    if parts[0] == "mid_block":
        rest = ".".join(parts[3:])
        if parts[1] == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{2 * int(parts[2])}.{_rename(rest, RESNET)}"
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":
            return f"output_blocks.{block * (layers + 1) + layers}.UPSAMPLE." + ".".join(parts[4:])
        index = block * (layers + 1) + int(parts[3])
        rest = ".".join(parts[4:])
        return (
            f"output_blocks.{index}.0.{_rename(rest, RESNET)}"
            if kind == "resnets"
            else f"output_blocks.{index}.1.{rest}"
        )
    raise KeyError(key)


def vae_key(key: str, levels: int) -> str:
    parts = key.split(".")
    side = parts[0]
    if side in ("quant_conv", "post_quant_conv"):
        return key
    if parts[1] in ("conv_in", "conv_out"):
        return key
    if parts[1] == "conv_norm_out":
        return f"{side}.norm_out." + ".".join(parts[2:])
    if parts[1] == "mid_block":
        if parts[2] == "attentions":
            return f"{side}.mid.attn_1." + _rename(".".join(parts[4:]), VAE_ATTENTION)
        return f"{side}.mid.block_{int(parts[3]) + 1}." + _rename(".".join(parts[4:]), VAE_RESNET)
    block = int(parts[2])
    if side == "decoder":
        block = levels - 1 - block
    kind = "down" if side == "encoder" else "up"
    if parts[3] == "resnets":
        return f"{side}.{kind}.{block}.block.{parts[4]}." + _rename(".".join(parts[5:]), VAE_RESNET)
    sampler = "downsample" if side == "encoder" else "upsample"
    return f"{side}.{kind}.{block}.{sampler}." + ".".join(parts[5:])


def write_single_file(unet, vae, text_encoder, path: Path) -> Path:
    """All three models' weights in the SD1.x original key layout, as one .safetensors file."""
    state = _unet_and_vae(unet, vae)
    for key, value in text_encoder.state_dict().items():
        state["cond_stage_model.transformer.text_model." + key.removeprefix("text_model.")] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


OPEN_CLIP = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def open_clip_state(text_encoder) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection's weights in OpenCLIP's layout (what SDXL files carry for CLIP-G)."""
    source = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    state = {
        "token_embedding.weight": source.pop("embeddings.token_embedding.weight"),
        "positional_embedding": source.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": source.pop("final_layer_norm.weight"),
        "ln_final.bias": source.pop("final_layer_norm.bias"),
        "text_projection": source.pop("text_projection.weight").T,
    }
    for key in [k for k in source if ".q_proj." in k]:
        layer, kind = key.split(".self_attn.q_proj.")
        fused = torch.cat([source.pop(key.replace(".q_proj.", f".{p}_proj.")) for p in "qkv"])
        state[f"transformer.resblocks.{layer.split('.')[-1]}.attn.in_proj_{kind}"] = fused
    for key, value in source.items():
        if not key.startswith("encoder.layers."):
            continue
        rest = key.removeprefix("encoder.layers.").replace("self_attn.out_proj", "attn.out_proj")
        for old, new in OPEN_CLIP.items():
            rest = rest.replace(old, new)
        state["transformer.resblocks." + rest] = value
    return state


def write_sdxl_single_file(unet, vae, text_encoder, text_encoder_2, path: Path) -> Path:
    """An SDXL base (or, with `text_encoder` None, refiner) model as one original-layout file."""
    state = _unet_and_vae(unet, vae)
    embedder = 0
    if text_encoder is not None:
        for key, value in text_encoder.state_dict().items():
            state["conditioner.embedders.0.transformer.text_model." + key.removeprefix("text_model.")] = value
        embedder = 1
    for key, value in open_clip_state(text_encoder_2).items():
        state[f"conditioner.embedders.{embedder}.model.{key}"] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _unet_and_vae(unet, vae) -> dict[str, torch.Tensor]:
    layers = unet.config.layers_per_block
    state: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        new = unet_key(key, layers)
        if ".UPSAMPLE." in new:  # the upsampler sits after the resnet (and attention, when the block has one)
            index = int(new.split(".")[1])
            slot = (
                2
                if any(
                    k.startswith(f"output_blocks.{index}.1.")
                    for k in map(lambda k: unet_key(k, layers), unet.state_dict())
                    if ".UPSAMPLE." not in k
                )
                else 1
            )
            new = new.replace(".UPSAMPLE.", f".{slot}.")
        state["model.diffusion_model." + new] = value
    state.update({"first_stage_model." + k: v for k, v in vae_state(vae).items()})
    return state


def vae_state(vae) -> dict[str, torch.Tensor]:
    """An AutoencoderKL's tensors in the original layout, unprefixed (as Flux's ae.safetensors has them)."""
    levels = len(vae.config.block_out_channels)
    state = {}
    for key, value in vae.state_dict().items():
        new = vae_key(key, levels)
        if ".attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM attention projections are 1x1 convolutions
        state[new] = value
    return state
