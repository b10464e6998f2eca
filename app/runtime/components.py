"""Model parts from single files, one at a time: how ComfyUI users keep SD3 and Flux. The diffusion model
sits in models/diffusion_models, each text encoder in models/text_encoders (clip_l, clip_g, t5xxl), the VAE
in models/vae; a config skeleton (assets/configs/flux-dev, sd3.5-large, ...) names the architecture.

- What a file is comes from its header only: `diffusion_model_skeleton` asks each family (Flux in Black
  Forest Labs' or diffusers' layout, SD3 in Stability's or diffusers'), `text_encoder_kind` tells CLIP from
  T5 and reads the width, which `assign` matches against the skeleton's encoders (CLIP-L 768, CLIP-G 1280).
- Reading builds the module from the skeleton's config, on the meta device (no random init: a 12B model
  costs no time or memory before its weights arrive), with the sizes that vary read from the tensors
  (`Family.sizes`), and puts the file's tensors in place in the run's dtype. Tensors stored as fp8
  (ComfyUI's `*_fp8_e4m3fn` files) are upcast; "scaled" fp8 files carry a `scale_weight` per layer, which
  is multiplied in. A tensor the module needs and the file lacks is an error naming the file.

Pure Python at module level; torch, safetensors, diffusers and transformers inside. Never import Qt here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.runtime.checkpoints import DIT_PREFIX as PREFIX
from app.runtime.checkpoints import CheckpointProblem, dit_skeleton, safetensors_header
from app.runtime.families import Family, TextEncoder

VAE_PREFIXES = ("first_stage_model.", "vae.")  # an all-in-one file's VAE, as ComfyUI and diffusers name it
T5_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
CLIP_KEY = "embeddings.token_embedding.weight"


def shapes(path: Path, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a .safetensors header, names under `prefix` only, `prefix` removed."""
    header = safetensors_header(path)
    return {
        key[len(prefix) :]: tuple(value.get("shape", ()))
        for key, value in header.items()
        if key != "__metadata__" and key.startswith(prefix)
    }


def diffusion_model_skeleton(path: Path) -> str:
    """The shipped skeleton for a diffusion-model-only file, from its tensor names and shapes."""
    name = dit_skeleton(path)
    if name:
        return name
    raise CheckpointProblem(
        f"{path.name}: not a diffusion model this app knows (Flux.1 or SD3 / SD3.5 transformer weights); "
        "name a config skeleton in the loader's 'config' param"
    )


@dataclass(frozen=True)
class Found:
    """What a text encoder file holds: `kind` clip or t5, its `width`, and the `prefix` of its names."""

    kind: str
    width: int
    prefix: str


def text_encoders_in(path: Path) -> list[Found]:
    """Every CLIP and T5 text encoder in a file's header (HF key layout, any prefix): one for a file of
    models/text_encoders, several in an all-in-one checkpoint (`text_encoders.clip_l.transformer.`, ...)."""
    found = []
    for key, shape in shapes(path).items():
        if key.endswith(T5_KEY):
            found.append(Found("t5", shape[1], key[: -len(T5_KEY)]))
        elif key.endswith(CLIP_KEY):
            found.append(Found("clip", shape[1], key[: -len(CLIP_KEY)].removesuffix("text_model.")))
    return found


def text_encoder_kind(path: Path) -> Found:
    """CLIP or T5, and how wide, from a text encoder file's header (HF key layout, any prefix)."""
    found = text_encoders_in(path)
    if not found:
        raise CheckpointProblem(f"{path.name}: not a CLIP or T5 text encoder (no {CLIP_KEY} or {T5_KEY})")
    return found[0]


def fit(found: Found, name: str, skeleton: Path, family: type[Family]) -> TextEncoder:
    """Which of the family's text encoders `found` (in the file `name`) is: T5 by kind, CLIPs by their
    width against the skeleton's encoder configs. Raises CheckpointProblem naming the file if none."""
    fits = [
        e
        for e in family.encoders
        if e.kind == found.kind
        and (found.kind == "t5" or _config(skeleton, e.part)["hidden_size"] == found.width)
    ]
    if not fits:
        widths = ", ".join(
            f"{e.part} {_config(skeleton, e.part)['hidden_size']}"
            for e in family.encoders
            if e.kind == "clip"
        )
        raise CheckpointProblem(
            f"{name}: a {found.kind.upper()} text encoder {found.width} wide fits none of this "
            f"{family.name} model's ({widths}, T5)"
        )
    return fits[0]


def assign(files: list[Path], skeleton: Path, family: type[Family]) -> dict[str, Path]:
    """Which of the family's text encoders (part name) each file is (see `fit`)."""
    parts: dict[str, Path] = {}
    for path in files:
        part = fit(text_encoder_kind(path), path.name, skeleton, family).part
        if part in parts:
            raise CheckpointProblem(f"{path.name} and {parts[part].name} are both {part}")
        parts[part] = path
    return parts


def _config(skeleton: Path, part: str) -> dict[str, Any]:
    return json.loads((skeleton / part / "config.json").read_text("utf-8"))


def read_denoiser(path: Path, skeleton: Path, family: type[Family], dtype: Any) -> Any:
    """The denoiser in `path` (a diffusion-model file, or an all-in-one under `model.diffusion_model.`)."""
    import diffusers

    state = _tensors(path, PREFIX if any(k.startswith(PREFIX) for k in shapes(path)) else "", dtype)
    state = family.to_diffusers(state)
    cls = getattr(diffusers, _class_name(skeleton, family.denoiser))
    config = dict(cls.load_config(skeleton / family.denoiser))
    config.update(family.sizes({key: tuple(value.shape) for key, value in state.items()}))
    return build(lambda: cls.from_config(config), state, path)


def read_text_encoder(
    path: Path, skeleton: Path, spec: TextEncoder, dtype: Any, found: Found | None = None
) -> Any:
    """The text encoder `spec` from a file in Hugging Face's key layout: the file's only one, or `found`."""
    import transformers

    found = found or text_encoder_kind(path)
    state = _tensors(path, found.prefix, dtype)
    cls = getattr(transformers, spec.cls)
    config = cls.config_class.from_pretrained(skeleton / spec.part)
    expected_prefix = "text_model." if spec.cls == "CLIPTextModelWithProjection" else ""
    if (
        found.kind == "clip"
    ):  # transformers 5: CLIPTextModel's names lost `text_model.`, the projection's kept it
        state = {
            (k if k.startswith("text_projection") else expected_prefix + k.removeprefix("text_model.")): v
            for k, v in state.items()
            if not k.endswith("position_ids")
        }
    else:
        state.setdefault("encoder.embed_tokens.weight", state.get("shared.weight"))
    return build(lambda: cls(config), state, path)


def read_all_in_one(
    path: Path, skeleton: Path, family: type[Family], dtypes: dict[str, Any]
) -> dict[str, Any]:
    """The parts of an all-in-one SD3 / Flux file (ComfyUI's checkpoints: the transformer under
    `model.diffusion_model.`, the VAE under `first_stage_model.` or `vae.`, text encoders under
    `text_encoders.<name>.transformer.`), each in `dtypes[part]`. Text encoders the file lacks are left out
    (SD3 files without T5 are common; Dual / Triple CLIP supply them); a file without a VAE is refused."""
    modules = {family.denoiser: read_denoiser(path, skeleton, family, dtypes[family.denoiser])}
    for found in text_encoders_in(path):
        spec = fit(found, path.name, skeleton, family)
        if spec.part in modules:
            raise CheckpointProblem(f"{path.name}: holds two text encoders that are both {spec.part}")
        modules[spec.part] = read_text_encoder(path, skeleton, spec, dtypes[spec.part], found)
    modules["vae"] = read_vae(path, skeleton, dtypes["vae"])
    return modules


def read_vae(path: Path, skeleton: Path, dtype: Any) -> Any:
    """The VAE of an all-in-one file (original layout under one of VAE_PREFIXES), with the skeleton's
    vae/ config. Only its tensors are read, not the whole file."""
    from diffusers import AutoencoderKL

    names = shapes(path)
    prefix = next((p for p in VAE_PREFIXES if any(k.startswith(p + "decoder.") for k in names)), None)
    if prefix is None:
        raise CheckpointProblem(
            f"{path.name}: holds no VAE ({' or '.join(VAE_PREFIXES)} names); it is a diffusion model "
            "on its own: load it with Load Diffusion Model and the VAE with Load VAE"
        )
    state = _tensors(path, prefix, dtype)
    return AutoencoderKL.from_single_file(
        state, config=str(skeleton), subfolder="vae", torch_dtype=dtype, local_files_only=True
    )


def _class_name(skeleton: Path, part: str) -> str:
    index = json.loads((skeleton / "model_index.json").read_text("utf-8"))
    return index[part][1]


def _tensors(path: Path, prefix: str, dtype: Any) -> dict[str, Any]:
    """The file's tensors under `prefix` (removed), in `dtype`: fp8 upcast, scaled fp8 multiplied out."""
    import torch
    from safetensors import safe_open

    raw: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            if key.startswith(prefix):
                raw[key[len(prefix) :]] = handle.get_tensor(key)
    state = {}
    for key, value in raw.items():
        if key == "scaled_fp8" or key.endswith((".scale_weight", ".scale_input")):
            continue
        scale = raw.get(key.removesuffix(".weight") + ".scale_weight") if key.endswith(".weight") else None
        value = value.to(torch.float32) * scale.to(torch.float32) if scale is not None else value
        state[key] = value.to(dtype)
    return state


def build(make: Any, state: dict[str, Any], path: Path) -> Any:
    """`make()` on the meta device, then the tensors of `state` put in place; every parameter must come
    from the file (CheckpointProblem names what is missing or does not fit)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = make()
    expected = module.state_dict()
    missing = [key for key in expected if key not in state and expected[key].device.type == "meta"]
    wrong = [
        key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if missing or wrong:
        what = (
            f"lacks {', '.join(missing[:4])}" if missing else f"has other shapes for {', '.join(wrong[:4])}"
        )
        raise CheckpointProblem(f"{path.name}: {what} (is it the model its config skeleton describes?)")
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    return module.eval().requires_grad_(False)
