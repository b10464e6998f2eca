"""LoRA: low-rank weight patches read from a file and applied to a loaded model for one use, then removed.

Files are .safetensors, or .pt/.ckpt read with torch.load(weights_only=True). Key formats:
- kohya / A1111 (`lora_unet_*`, `lora_te_*`, `lora_te1_*`, `lora_te2_*`, SDXL's original block names too),
  converted by diffusers' own converters (`lora_state_dict` with the UNet's config);
- ComfyUI (`diffusion_model.<original UNet key>`, `text_encoders.clip_l|clip_g.transformer.<key>`), renamed
  to kohya's names first;
- diffusers / peft (`unet.*`, `text_encoder.*`, `text_encoder_2.*` with `lora_A`/`lora_B` or
  `lora.down`/`lora.up`; keys without a prefix are the UNet's, as diffusers reads them).

kohya's per-module `alpha` is folded into the down weight (times alpha / rank), so every layer's change is
`up @ down` (LoCon convolutions: flattened, reshaped to the weight). A patch adds `strength * change` to each
target weight (in float32, cast back), keeps the original weight, and puts it back bit for bit when the use
ends, also on an exception: the base model is loaded once and never reloaded for a LoRA or a strength.
Keys no converter understands (LoHa, LoKr, DoRA scales, ...) and layers the model lacks are reported, not
silently dropped. torch and diffusers are imported inside the functions; never import Qt here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.runtime import weights

PARTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
DENOISERS = ("unet", "transformer")
UNDERSTOOD = (".lora_down.weight", ".lora_up.weight", ".alpha")
_COMFY_TEXT = {
    "text_encoders.clip_l.transformer.": "lora_te1_",
    "text_encoders.clip_g.transformer.": "lora_te2_",
}


class LoraProblem(ValueError):
    """A LoRA file that cannot be read or fits nothing in the model; the message names the file."""


@dataclass(frozen=True)
class Layer:
    """One low-rank change: `up @ down` added to `module`'s weight in component `part`."""

    part: str
    module: str
    up: Any
    down: Any

    def change(self, shape: tuple[int, ...], device: Any = "cpu") -> Any:
        """The full-size change (float32, computed on `device`) for a weight of `shape` (Linear or Conv2d)."""
        up, down = self.up.to(device, non_blocking=True), self.down.to(device, non_blocking=True)
        return (up.flatten(1).float() @ down.flatten(1).float()).reshape(shape)


@dataclass
class LoraFile:
    """The layers of a LoRA file in diffusers module names, and the keys that were not understood."""

    name: str
    layers: list[Layer] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def parts(self) -> set[str]:
        return {layer.part for layer in self.layers}


def read_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and metadata of a LoRA or embedding file (never unpickles code)."""
    return weights.read_state_dict(path, LoraProblem)


def read(path: Path, denoiser_config: Any, family: Any = None) -> LoraFile:
    """The LoRA at `path` as layers in diffusers names for a model of `family` (app/runtime/families;
    None = SD-class) whose denoiser has `denoiser_config` (None when only its text encoders are loaded)."""
    tensors, _ = read_state_dict(path)
    return convert(tensors, denoiser_config, path.name, family)


def convert(tensors: dict[str, Any], unet_config: Any, name: str = "lora", family: Any = None) -> LoraFile:
    """Layers from a LoRA state dict in any supported format (see the module docstring): the family's
    own module names first (Flux's BFL names), then kohya, ComfyUI and diffusers/peft names."""
    result = LoraFile(name)
    denoiser = family.denoiser if family is not None else "unet"
    own = family.lora_to_peft(tensors, unet_config) if family is not None else None
    if own is not None:
        peft, left = own
        result.layers += _from_diffusers(peft, result.skipped, denoiser)
        tensors = {key: tensors[key] for key in left}
        if not tensors:
            return _checked(result, name, peft)
    tensors = _comfy_to_kohya(dict(tensors))
    kohya = {
        k: v for k, v in tensors.items() if k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_"))
    }
    if kohya:
        understood = {k: v for k, v in kohya.items() if k.endswith(UNDERSTOOD)}
        result.skipped += sorted(set(tensors) - set(understood))
        result.layers += _from_kohya(understood, unet_config, result.skipped)
    else:
        result.layers += _from_diffusers(tensors, result.skipped, denoiser)
    return _checked(result, name, tensors)


def _checked(result: LoraFile, name: str, tensors: dict[str, Any]) -> LoraFile:
    if not result.layers:
        raise LoraProblem(
            f"{name}: no LoRA layers found ({len(tensors)} keys, e.g. {next(iter(tensors), '-')})"
        )
    return result


def _comfy_to_kohya(tensors: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's `diffusion_model.` / `text_encoders.clip_*.transformer.` keys as kohya's `lora_*_` names."""
    renamed = {}
    for key, value in tensors.items():
        new = key
        if key.startswith("diffusion_model."):
            module, suffix = _split_lora_suffix(key.removeprefix("diffusion_model."))
            new = "lora_unet_" + module.replace(".", "_") + suffix
        for prefix, kohya in _COMFY_TEXT.items():
            if key.startswith(prefix):
                module, suffix = _split_lora_suffix(key.removeprefix(prefix))
                new = kohya + module.replace(".", "_") + suffix
        renamed[new] = value
    return renamed


def _split_lora_suffix(key: str) -> tuple[str, str]:
    """(module path, `.lora_down.weight` / `.lora_up.weight` / `.alpha` or "")."""
    for suffix in UNDERSTOOD:
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix
    return key, ""


def _from_kohya(tensors: dict[str, Any], unet_config: Any, skipped: list[str]) -> list[Layer]:
    """Fold alpha / rank into each down weight, then let diffusers rename the layers."""
    from diffusers import StableDiffusionXLPipeline

    folded = {}
    for key, value in tensors.items():
        if not key.endswith(".lora_down.weight"):
            continue
        stem = key[: -len(".lora_down.weight")]
        up = tensors.get(stem + ".lora_up.weight")
        if up is None:
            skipped.append(key)
            continue
        alpha = tensors.get(stem + ".alpha")
        scale = float(alpha) / value.shape[0] if alpha is not None else 1.0
        folded[key] = value.float() * scale
        folded[stem + ".lora_up.weight"] = up.float()
    skipped += [k for k in tensors if k.endswith(".lora_up.weight") and k not in folded]
    config = _ConfigView(unet_config)
    converted, _ = StableDiffusionXLPipeline.lora_state_dict(folded, unet_config=config)
    return _from_diffusers(converted, skipped)


class _ConfigView:
    """What diffusers' block renaming reads of a UNet config (attribute access on a dict or a config)."""

    def __init__(self, config: Any) -> None:
        self.layers_per_block = _get(config, "layers_per_block", 2)


def _get(config: Any, name: str, default: Any) -> Any:
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def _from_diffusers(tensors: dict[str, Any], skipped: list[str], denoiser: str = "unet") -> list[Layer]:
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    by_part: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
    prefixed = any(k.split(".", 1)[0] in PARTS for k in tensors)
    for key, value in tensors.items():
        part, _, rest = key.partition(".") if prefixed else (denoiser, "", key)
        if part in by_part and rest:
            by_part[part][rest] = value
        else:
            skipped.append(key)
    layers = []
    for part, state in by_part.items():
        if not state:
            continue
        if part == "unet":
            state = convert_unet_state_dict_to_peft(state)
        elif not any(".lora_A." in key for key in state):  # peft names already: nothing to convert
            state = convert_state_dict_to_peft(convert_state_dict_to_diffusers(state))
        for key, down in state.items():
            if not key.endswith(".lora_A.weight"):
                if not key.endswith(".lora_B.weight"):
                    skipped.append(f"{part}.{key}")
                continue
            up = state.get(key.replace(".lora_A.", ".lora_B."))
            module = key[: -len(".lora_A.weight")].replace(".processor.", ".")
            if up is None:
                skipped.append(f"{part}.{key}")
                continue
            layers.append(Layer(part, module, up.float().contiguous(), down.float().contiguous()))
    return layers


def _target(modules: dict[str, Any], part: str, name: str) -> Any:
    """The weight-holding module `name` of component `part`, or None (text encoders may lack text_model.)."""
    owner = modules.get(part)
    if owner is None:
        return None
    for candidate in (name, name.removeprefix("text_model.")):
        try:
            module = owner.get_submodule(candidate)
        except AttributeError:
            continue
        if hasattr(module, "weight"):
            return module
    return None


@dataclass
class Applied:
    """What one patching did: layers changed and layers the model does not have (by LoRA file)."""

    changed: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        return [
            f"{name}: {len(keys)} keys not applied: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for name, keys in self.missing.items()
            if keys
        ]


@contextmanager
def patched(modules: dict[str, Any], loras: list[tuple[LoraFile, float]]) -> Iterator[Applied]:
    """Add each LoRA (in order, at its strength) to `modules` (part name -> torch module) while inside;
    every changed weight is restored exactly on exit. Single-encoder families take `text_encoder` layers
    on their only encoder. Keys no converter understood are reported by the UNet's use only (the Sampler),
    so a run warns about them once; layers a present part lacks are reported by whoever patches it."""
    import torch

    applied = Applied()
    originals: dict[int, tuple[Any, Any]] = {}
    aliases = _aliases(modules)
    try:
        with torch.no_grad():
            for lora, strength in loras:
                missing = applied.missing.setdefault(
                    lora.name, list(lora.skipped) if modules.keys() & set(DENOISERS) else []
                )
                for layer in lora.layers:
                    part = aliases.get(layer.part, layer.part)
                    module = _target(modules, part, layer.module)
                    if module is None or module.weight.numel() != layer.up.shape[0] * layer.down[0].numel():
                        if part in modules:
                            missing.append(f"{layer.part}.{layer.module}")
                        continue
                    weight = module.weight
                    if id(weight) not in originals:
                        originals[id(weight)] = (weight, weight.detach().clone())
                    change = layer.change(tuple(weight.shape), weight.device)
                    weight.copy_((weight.float() + strength * change).to(weight.dtype))
                    applied.changed += 1
        yield applied
    finally:
        with torch.no_grad():
            for weight, original in originals.values():
                weight.copy_(original)


def _aliases(modules: dict[str, Any]) -> dict[str, str]:
    """A LoRA's `text_encoder` layers go to the only encoder of a one-encoder family (SDXL refiner: CLIP-G)."""
    encoders = [p for p in ("text_encoder", "text_encoder_2") if p in modules]
    return {"text_encoder": encoders[0]} if len(encoders) == 1 else {}


def describe(path: Path) -> dict[str, Any]:
    """Header facts of a LoRA file for listings (no weights read): key count, parts, format."""
    from app.runtime.checkpoints import safetensors_header

    header = safetensors_header(path)
    keys = [k for k in header if k != "__metadata__"]
    formats = {
        "kohya": any(k.startswith(("lora_unet_", "lora_te")) for k in keys),
        "comfyui": any(k.startswith(("diffusion_model.", "text_encoders.")) for k in keys),
        "diffusers": any(".lora_A." in k or ".lora.down." in k for k in keys),
        "xlabs": any(".processor.qkv_lora" in k or ".processor.proj_lora" in k for k in keys),
    }
    metadata = header.get("__metadata__") or {}
    base = metadata.get("ss_base_model_version") or metadata.get("modelspec.architecture") or ""
    if not base and any(
        k.startswith(("lora_te2_", "text_encoder_2.", "text_encoders.clip_g.")) for k in keys
    ):
        base = "sdxl"
    return {
        "keys": len(keys),
        "format": next((name for name, found in formats.items() if found), "unknown"),
        "base": base,
        "text_encoder": any(k.startswith(("lora_te", "text_encoder", "text_encoders.")) for k in keys),
    }
