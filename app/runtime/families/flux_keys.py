"""Flux.1 transformer weights in Black Forest Labs' layout (the files ComfyUI users keep in
models/diffusion_models, bare or under `model.diffusion_model.`) -> diffusers' FluxTransformer2DModel names.

diffusers' own converter fixes the model width at 3072 (the released models'); this one reads every size
from the tensors, so small test models convert too. tests/runtime/test_flux_keys.py checks it against
diffusers' converter on a full-size layout (keys and shapes) and against the exact inverse on a tiny model.
The rules: most tensors are renamed; fused q/k/v are cut in three (double blocks) or in q, k, v and the
MLP input (single blocks: three widths, the rest is the MLP); the final norm's (shift, scale) halves swap to
diffusers' (scale, shift). torch is imported inside; never import Qt here.
"""

from __future__ import annotations

from typing import Any

MARKER = "double_blocks.0.img_attn.norm.key_norm.scale"  # only the BFL layout has it (diffusers tests it too)
PREFIX = "model.diffusion_model."

RENAMES = {  # whole-model parts: BFL prefix -> diffusers prefix (".weight" / ".bias" follow)
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
DOUBLE = {  # inside double_blocks.N -> transformer_blocks.N
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
}
DOUBLE_QKV = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
SINGLE = {  # inside single_blocks.N -> single_transformer_blocks.N
    "modulation.lin": "norm.linear",
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
    "linear2": "proj_out",
}
SINGLE_FUSED = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")  # linear1, cut at the model width


def is_bfl(keys: Any) -> bool:
    """Whether tensor names are in BFL's Flux layout (with or without the ComfyUI prefix)."""
    return any(key.endswith(MARKER) for key in keys)


def to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A new dict with the BFL-layout Flux `state` in diffusers' names (the input is left as it was)."""
    import torch

    state = {k.removeprefix(PREFIX): v for k, v in state.items()}
    width = state["img_in.weight"].shape[0]
    out: dict[str, Any] = {}
    for key, value in state.items():
        stem, _, suffix = key.rpartition(".")
        if stem in RENAMES:
            out[f"{RENAMES[stem]}.{suffix}"] = value
        elif stem == "final_layer.adaLN_modulation.1":
            shift, scale = value.chunk(2, dim=0)
            out[f"norm_out.linear.{suffix}"] = torch.cat([scale, shift], dim=0)
        elif key.startswith("double_blocks."):
            _, index, rest = key.split(".", 2)
            out.update(_block(f"transformer_blocks.{index}", rest, value, DOUBLE, width, double=True))
        elif key.startswith("single_blocks."):
            _, index, rest = key.split(".", 2)
            out.update(_block(f"single_transformer_blocks.{index}", rest, value, SINGLE, width, double=False))
        else:
            raise ValueError(f"unknown tensor {key!r} in a Flux (BFL layout) file")
    return out


def _block(prefix: str, rest: str, value: Any, names: dict[str, str], width: int, double: bool) -> dict:
    if rest in names:  # a whole name (the norms' ".scale")
        return {f"{prefix}.{names[rest]}": value}
    stem, _, suffix = rest.rpartition(".")
    if stem in names:
        return {f"{prefix}.{names[stem]}.{suffix}": value}
    if double and stem in DOUBLE_QKV:
        return {
            f"{prefix}.{n}.{suffix}": part
            for n, part in zip(DOUBLE_QKV[stem], value.chunk(3, dim=0), strict=True)
        }
    if not double and stem == "linear1":
        parts = value.split((width, width, width, value.shape[0] - 3 * width), dim=0)
        return {f"{prefix}.{n}.{suffix}": part for n, part in zip(SINGLE_FUSED, parts, strict=True)}
    raise ValueError(f"unknown tensor {prefix}.{rest!r} in a Flux (BFL layout) file")
