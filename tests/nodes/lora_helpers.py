"""Synthetic LoRA files for the LoRA tests: one set of low-rank pairs written in each key format artists
meet (kohya/A1111 with diffusers or original block names, ComfyUI, diffusers/peft), and the weights a
correct loader must end up with: W + strength * alpha / rank * up @ down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from tools.ldm_layout import unet_key

TEXT_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1")


@dataclass
class Pair:
    """One low-rank change of `module` in component `part` (unet, text_encoder, text_encoder_2)."""

    part: str
    module: str  # diffusers / transformers module path, "text_model." included for text encoders
    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    def change(self) -> torch.Tensor:
        """alpha / rank * up @ down, shaped like the target weight."""
        delta = self.up.flatten(1) @ self.down.flatten(1)
        shape = (self.up.shape[0], *self.down.shape[1:])
        return (self.alpha / self.down.shape[0]) * delta.reshape(shape)


def unet_targets(unet) -> list[str]:
    """Attention, projection, feed-forward and one resnet convolution (a LoCon layer) of a UNet."""
    names = []
    for name, module in unet.named_modules():
        attention = name.endswith(
            (".to_q", ".to_k", ".to_v", ".to_out.0", ".proj_in", ".proj_out", ".ff.net.2")
        )
        if attention and hasattr(module, "weight"):
            names.append(name)
    return [*names, "down_blocks.0.resnets.0.conv1"]


def make_pairs(unet, text_encoders: dict[str, object], seed: int, rank: int = 2, alphas=(1.0,)) -> list[Pair]:
    """Random pairs (scaled to change the model visibly) for a UNet and its text encoders; alphas cycle."""
    generator = torch.Generator().manual_seed(seed)
    pairs: list[Pair] = []
    targets = [("unet", unet, name) for name in unet_targets(unet)]
    for part, encoder in text_encoders.items():
        layers = encoder.config.num_hidden_layers
        flat = not hasattr(encoder, "text_model")
        for layer in range(layers):
            for target in TEXT_TARGETS:
                module = f"encoder.layers.{layer}.{target}"
                targets.append((part, encoder, module if flat else f"text_model.{module}"))
    for index, (part, owner, name) in enumerate(targets):
        weight = owner.get_submodule(name).weight
        out_features, rest = weight.shape[0], weight.shape[1:]
        down_shape = (rank, rest[0], *rest[1:]) if weight.ndim == 4 else (rank, rest[0])
        up_shape = (out_features, rank, 1, 1) if weight.ndim == 4 else (out_features, rank)
        down = torch.randn(down_shape, generator=generator) * 0.3
        up = torch.randn(up_shape, generator=generator) * 0.3
        module = name if part == "unet" or name.startswith("text_model.") else f"text_model.{name}"
        pairs.append(Pair(part, module, down, up, alphas[index % len(alphas)]))
    return pairs


KOHYA_TEXT = {"text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}


def kohya(
    pairs: list[Pair], layers_per_block: int | None = None, sdxl: bool = False
) -> dict[str, torch.Tensor]:
    """kohya/A1111 keys; `layers_per_block` given = the UNet in original (sgm) block names, as SDXL LoRAs
    made by kohya's scripts have them; `sdxl` = CLIP-L as lora_te1_."""
    state = {}
    for pair in pairs:
        if pair.part == "unet":
            module = pair.module if layers_per_block is None else _ldm(pair.module, layers_per_block)
            stem = "lora_unet_" + module.replace(".", "_")
        else:
            prefix = "lora_te1_" if sdxl and pair.part == "text_encoder" else KOHYA_TEXT[pair.part]
            stem = prefix + pair.module.replace(".", "_")
        state[stem + ".lora_down.weight"] = pair.down
        state[stem + ".lora_up.weight"] = pair.up
        state[stem + ".alpha"] = torch.tensor(pair.alpha)
    return state


def comfyui(pairs: list[Pair], layers_per_block: int) -> dict[str, torch.Tensor]:
    """ComfyUI's own keys: the UNet by its original checkpoint names, CLIP under text_encoders.clip_l/g."""
    state = {}
    for pair in pairs:
        if pair.part == "unet":
            stem = "diffusion_model." + _ldm(pair.module, layers_per_block)
        else:
            clip = "clip_l" if pair.part == "text_encoder" else "clip_g"
            stem = f"text_encoders.{clip}.transformer.{pair.module}"
        state[stem + ".lora_down.weight"] = pair.down
        state[stem + ".lora_up.weight"] = pair.up
        state[stem + ".alpha"] = torch.tensor(pair.alpha)
    return state


def peft(pairs: list[Pair]) -> dict[str, torch.Tensor]:
    """diffusers/peft keys (no alphas: the scale is 1, so alpha / rank is folded into the down weights)."""
    state = {}
    for pair in pairs:
        stem = f"{pair.part}.{pair.module}"
        state[stem + ".lora_A.weight"] = pair.down * (pair.alpha / pair.down.shape[0])
        state[stem + ".lora_B.weight"] = pair.up
    return state


def _ldm(module: str, layers_per_block: int) -> str:
    key = unet_key(module + ".weight", layers_per_block).removesuffix(".weight")
    return key.replace(".UPSAMPLE.", ".2.")


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def assert_changes(converted, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A converted DiT LoRA (app.runtime.lora.convert) changes exactly the weights `expected` names, each by
    its expected change; returns the changes by weight name."""
    assert not converted.skipped
    got = {
        f"{layer.module}.weight": layer.change((layer.up.shape[0], layer.down.shape[1]))
        for layer in converted.layers
    }
    assert got.keys() == expected.keys()
    for key, change in got.items():
        assert torch.allclose(change, expected[key], atol=1e-6), key
    return got


def peft_transformer_lora(transformer, seed: int, rank: int = 2) -> dict[str, torch.Tensor]:
    """diffusers' own format for a DiT: transformer.<module>.lora_A/B on every attention query/key/value and
    MLP linear (Flux's single blocks' proj_mlp included), scaled to change the output visibly."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(
            ("to_q", "to_k", "to_v", "proj_mlp", "ff.net.2")
        ):
            out, inp = module.weight.shape
            state[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, inp, generator=generator) * 0.3
            state[f"transformer.{name}.lora_B.weight"] = torch.randn(out, rank, generator=generator) * 0.3
    return state
