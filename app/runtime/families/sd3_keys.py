"""SD3 LoRAs in Stability's module names: kohya's (`lora_unet_joint_blocks_0_x_block_attn_qkv`) and ComfyUI's
(`diffusion_model.joint_blocks.0.x_block.attn.qkv`), as diffusers/peft tensors for SD3Transformer2DModel.

Fused q/k/v are cut along the up weight's rows (the down weight is shared by the three); kohya's alpha / rank
is folded into the down weight. Where diffusers' converter swaps the halves of an adaLN weight (the last joint
block's context norm and the final layer's, whose (shift, scale) diffusers stores as (scale, shift)), the up
weight's halves are swapped the same way. Pure Python apart from the tensors handed in; never import Qt.
"""

from __future__ import annotations

import re
from typing import Any

from app.runtime.families.flux_keys import originals_to_peft

SIDES = {  # Stability's names inside joint_blocks.N.<side>_block -> diffusers' inside transformer_blocks.N
    "x": {
        "attn.proj": "attn.to_out.0",
        "attn2.proj": "attn2.to_out.0",
        "mlp.fc1": "ff.net.0.proj",
        "mlp.fc2": "ff.net.2",
        "adaLN_modulation.1": "norm1.linear",
    },
    "context": {
        "attn.proj": "attn.to_add_out",
        "mlp.fc1": "ff_context.net.0.proj",
        "mlp.fc2": "ff_context.net.2",
        "adaLN_modulation.1": "norm1_context.linear",
    },
}
QKV = {
    ("x", "attn.qkv"): ("attn.to_q", "attn.to_k", "attn.to_v"),
    ("x", "attn2.qkv"): ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
    ("context", "attn.qkv"): ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
TOP = {
    "x_embedder.proj": "pos_embed.proj",
    "context_embedder": "context_embedder",
    "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
    "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
    "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
    "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
_DOTTED = re.compile(r"^joint_blocks\.(\d+)\.(x|context)_block\.(.+)$")
_KOHYA = re.compile(
    r"^joint_blocks_(\d+)_(x|context)_block_(attn2?_qkv|attn2?_proj|mlp_fc[12]|adaLN_modulation_1)$"
)
_KOHYA_TOP = {k.replace(".", "_"): k for k in (*TOP, "final_layer.adaLN_modulation.1")}


def _module(stem: str) -> str | None:
    """A LoRA module name (kohya's underscores, or Stability's dots with ComfyUI's prefix) as Stability's path."""
    stem = (
        stem.removeprefix("lora_unet_")
        .removeprefix("diffusion_model.")
        .removeprefix("model.diffusion_model.")
    )
    if _DOTTED.match(stem) or stem in TOP or stem == "final_layer.adaLN_modulation.1":
        return stem
    if match := _KOHYA.match(stem):
        index, side, rest = match.groups()
        rest = "adaLN_modulation.1" if rest == "adaLN_modulation_1" else rest.replace("_", ".", 1)
        return f"joint_blocks.{index}.{side}_block.{rest}"
    return _KOHYA_TOP.get(stem)


def lora_to_peft(tensors: dict[str, Any], blocks: int | None) -> tuple[dict[str, Any], list[str]] | None:
    """(diffusers/peft `transformer.<module>.lora_A/B.weight` tensors, keys left for other converters), or
    None when no key is in Stability's names. `blocks`: the transformer's joint block count (its last block's
    context norm is stored swapped)."""
    import torch

    out, left = originals_to_peft(tensors, _module, lambda module, up: _targets(module, up, blocks, torch))
    return (out, left) if len(left) < len(tensors) else None


def _swapped(up: Any, torch: Any) -> Any:
    shift, scale = up.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def _targets(module: str, up: Any, blocks: int | None, torch: Any) -> list[tuple[str, Any]]:
    """(diffusers module, its rows of the up weight) for one Stability module."""
    if module in TOP:
        return [(TOP[module], up)]
    if module == "final_layer.adaLN_modulation.1":
        return [("norm_out.linear", _swapped(up, torch))]
    index, side, rest = _DOTTED.match(module).groups()
    prefix = f"transformer_blocks.{index}"
    if (side, rest) in QKV:
        return [(f"{prefix}.{n}", part) for n, part in zip(QKV[side, rest], up.chunk(3, dim=0), strict=True)]
    if rest not in SIDES[side]:
        return []
    last = blocks is not None and int(index) == blocks - 1
    if side == "context" and rest == "adaLN_modulation.1" and last:
        return [(f"{prefix}.norm1_context.linear", _swapped(up, torch))]
    return [(f"{prefix}.{SIDES[side][rest]}", up)]
