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

import re
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


LORA_SUFFIXES = (
    ".lora_down.weight",
    ".lora_up.weight",
    ".lora_A.weight",
    ".lora_B.weight",
    ".alpha",
    ".down.weight",  # XLabs'
    ".up.weight",
)
_XLABS = re.compile(r"^(double_blocks|single_blocks)\.(\d+)\.processor\.(qkv|proj)_lora(\d?)$")
_XLABS_MODULES = {  # XLabs' attention processor LoRAs -> BFL modules ("qkv" in a single block: q, k, v alone)
    ("double_blocks", "qkv", "1"): "img_attn.qkv",
    ("double_blocks", "proj", "1"): "img_attn.proj",
    ("double_blocks", "qkv", "2"): "txt_attn.qkv",
    ("double_blocks", "proj", "2"): "txt_attn.proj",
    ("single_blocks", "qkv", ""): "qkv",
    ("single_blocks", "proj", ""): "linear2",
}
_KOHYA_DOUBLE = re.compile(r"^double_blocks_(\d+)_(img|txt)_(attn_qkv|attn_proj|mlp_0|mlp_2|mod_lin)$")
_KOHYA_SINGLE = re.compile(r"^single_blocks_(\d+)_(linear1|linear2|modulation_lin)$")
_KOHYA_TOP = {stem.replace(".", "_"): stem for stem in (*RENAMES, "final_layer.adaLN_modulation.1")}


def _bfl_module(stem: str) -> str | None:
    """A LoRA module name (kohya's underscores or BFL's dots, ComfyUI's prefix) as the BFL module path."""
    stem = stem.removeprefix("lora_unet_").removeprefix("diffusion_model.").removeprefix(PREFIX)
    if match := _XLABS.match(stem):
        kind, index, what, side = match.groups()
        module = _XLABS_MODULES.get((kind, what, side))
        return f"{kind}.{index}.{module}" if module else None
    if (
        stem.startswith(("double_blocks.", "single_blocks."))
        or stem in RENAMES
        or stem.startswith("final_layer.")
    ):
        return stem
    if match := _KOHYA_DOUBLE.match(stem):
        index, side, rest = match.groups()
        return f"double_blocks.{index}.{side}_{rest.replace('_', '.', 1)}"
    if match := _KOHYA_SINGLE.match(stem):
        index, rest = match.groups()
        return f"single_blocks.{index}.{rest.replace('_', '.')}"
    return _KOHYA_TOP.get(stem)


def lora_to_peft(tensors: dict[str, Any], width: int | None) -> tuple[dict[str, Any], list[str]]:
    """A Flux LoRA in BFL module names (kohya `lora_unet_double_blocks_0_img_attn_qkv`, ComfyUI
    `diffusion_model.double_blocks.0.img_attn.qkv`, XLabs `double_blocks.0.processor.qkv_lora1`) as diffusers/peft `transformer.<module>.lora_A/B`
    tensors, for a model `width` wide: kohya's alpha / rank folded into the down weight, fused q/k/v (and
    the single blocks' MLP input) cut along the up weight's rows (the down weight is shared), the final
    norm's halves swapped; without a `width` the single blocks' MLP is taken as 4x wide. Returns
    (tensors, keys left out: not a Flux transformer LoRA's)."""
    import torch

    return originals_to_peft(tensors, _bfl_module, lambda module, up: _targets(module, up, width, torch))


def originals_to_peft(
    tensors: dict[str, Any], module_of: Any, targets: Any
) -> tuple[dict[str, Any], list[str]]:
    """A LoRA in a model's original module names as diffusers/peft tensors: `module_of(stem)` names each key's
    original module (None: not one of them), `targets(module, up)` gives the diffusers modules and their rows
    of the up weight; kohya's alpha / rank is folded into the shared down weight. Returns (tensors, keys left)."""
    modules: dict[str, dict[str, Any]] = {}
    left: list[str] = []
    for key, value in tensors.items():
        suffix = next((s for s in LORA_SUFFIXES if key.endswith(s)), None)
        module = module_of(key[: -len(suffix)]) if suffix else None
        if module is None:
            left.append(key)
            continue
        modules.setdefault(module, {})[suffix] = value
    out: dict[str, Any] = {}
    for module, parts in modules.items():
        down = next(
            (parts[s] for s in (".lora_down.weight", ".lora_A.weight", ".down.weight") if s in parts), None
        )
        up = next((parts[s] for s in (".lora_up.weight", ".lora_B.weight", ".up.weight") if s in parts), None)
        if down is None or up is None:
            left += [f"{module}{s}" for s in parts]
            continue
        alpha = parts.get(".alpha")
        down = down.float() * (float(alpha) / down.shape[0] if alpha is not None else 1.0)
        for target, rows in targets(module, up.float()):
            out[f"transformer.{target}.lora_A.weight"] = down
            out[f"transformer.{target}.lora_B.weight"] = rows
    return out, left


def _targets(module: str, up: Any, width: int | None, torch: Any) -> list[tuple[str, Any]]:
    """(diffusers module, its rows of the up weight) for one BFL module."""
    if module in RENAMES:
        return [(RENAMES[module], up)]
    if module == "final_layer.adaLN_modulation.1":
        shift, scale = up.chunk(2, dim=0)
        return [("norm_out.linear", torch.cat([scale, shift], dim=0))]
    kind, index, rest = module.split(".", 2)
    if kind == "double_blocks":
        prefix = f"transformer_blocks.{index}"
        if rest in DOUBLE_QKV:
            return [
                (f"{prefix}.{n}", part) for n, part in zip(DOUBLE_QKV[rest], up.chunk(3, dim=0), strict=True)
            ]
        return [(f"{prefix}.{DOUBLE[rest]}", up)]
    prefix = f"single_transformer_blocks.{index}"
    if rest == "qkv":  # XLabs: the attention's part of linear1 only
        return [(f"{prefix}.{n}", part) for n, part in zip(SINGLE_FUSED[:3], up.chunk(3, dim=0), strict=True)]
    if rest == "linear1":
        width = width or up.shape[0] // 7  # q, k, v and an MLP 4x as wide
        parts = up.split((width, width, width, up.shape[0] - 3 * width), dim=0)
        return [(f"{prefix}.{n}", part) for n, part in zip(SINGLE_FUSED, parts, strict=True)]
    return [(f"{prefix}.{SINGLE[rest]}", up)]
