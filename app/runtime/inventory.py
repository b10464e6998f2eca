"""What each model root holds, per kind and family, read from file headers and configs (no weights loaded).

`nodeloom models` prints it; the editor's pickers list the same folders. Kinds are the model folders of
app/files.MODEL_FOLDERS (ComfyUI's names with A1111's aliases). A family is what a graph checks: sd15,
sd2, sdxl, sdxl_refiner, tiny-* for checkpoints; the latent space for VAEs; the base model for LoRAs and
embeddings where the file says or its shapes tell (768 wide = SD1.x, 1024 = SD2, clip_l + clip_g = SDXL).
A file that cannot be read is listed with the reason instead of a family.

Pure Python (json + safetensors headers): never import torch or Qt here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.files import MODEL_FOLDERS, FileProblem, FileResolver
from app.runtime import checkpoints, components, controlnets, lora, vaes

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
TEXT_WIDTHS = {768: "sd15", 1024: "sd2"}


@dataclass(frozen=True)
class Entry:
    """One model file or folder: where it is, what kind, its family (or why it has none) and a detail."""

    root: str
    kind: str
    name: str
    family: str
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def scan(resolver: FileResolver | None = None, kinds: tuple[str, ...] = tuple(MODEL_FOLDERS)) -> list[Entry]:
    """Every model under every root, kind by kind (a root's own top-level models count as checkpoints)."""
    resolver = resolver or FileResolver()
    entries: list[Entry] = []
    for root in resolver.model_roots:
        for kind in kinds:
            folders = [root / name for name in MODEL_FOLDERS[kind]] + (
                [root] if kind == "checkpoints" else []
            )
            for folder in folders:
                if not folder.is_dir():
                    continue
                for path in sorted(folder.iterdir()):
                    if _is_model(path, kind) and not (folder == root and path.name in _all_folder_names()):
                        entries.append(describe(root, kind, path))
    return entries


def _all_folder_names() -> set[str]:
    return {name for names in MODEL_FOLDERS.values() for name in names} | {"configs"}


def _is_model(path: Path, kind: str) -> bool:
    if path.is_file():
        return path.suffix in WEIGHT_SUFFIXES
    markers = ("model_index.json",) if kind == "checkpoints" else ("config.json", "model_index.json")
    return path.is_dir() and any((path / m).is_file() for m in markers)


def describe(root: Path, kind: str, path: Path) -> Entry:
    """The family and a short detail of one model, from its header or config."""
    try:
        family, detail = _READERS.get(kind, _unknown)(path)
    except (
        checkpoints.CheckpointProblem,
        controlnets.ControlNetProblem,
        FileProblem,
        KeyError,
        ValueError,
    ) as error:
        family, detail = "?", str(error)
    return Entry(str(root), kind, str(path.relative_to(root)), family, detail)


def _checkpoint(path: Path) -> tuple[str, str]:
    if path.is_dir():
        return checkpoints.family_of(path), "diffusers folder"
    if path.suffix != ".safetensors":
        return "?", f"{path.suffix} files are not loaded (pickles can run code): use .safetensors"
    layout = checkpoints.detect_layout(path)
    if layout is None:
        return "?", "keys match no known layout; name a config skeleton in Load Checkpoint"
    if layout in checkpoints.LAYOUT_KEYS:
        return layout, "single file"
    names = [
        e.prefix.removeprefix("text_encoders.").partition(".")[0] or e.kind
        for e in components.text_encoders_in(path)
    ]
    encoders = ", ".join(sorted(names))
    return layout, f"single file with {encoders or 'no text encoders (add Dual / Triple CLIP)'}"


def _vae(path: Path) -> tuple[str, str]:
    return vaes.family_of(path), "diffusers folder" if path.is_dir() else "single file"


def _lora(path: Path) -> tuple[str, str]:
    if path.suffix != ".safetensors":
        return "?", f"{path.suffix} file (read with weights_only when used)"
    facts = lora.describe(path)
    parts = "UNet + text encoders" if facts["text_encoder"] else "UNet only"
    return facts["base"] or _lora_width(path), f"{facts['format']}, {facts['keys']} keys, {parts}"


def _lora_width(path: Path) -> str:
    """The base model a LoRA was made for, from the width of its cross-attention key projections."""
    header = checkpoints.safetensors_header(path)
    for key, value in header.items():
        if "attn2" in key and "to_k" in key and ("lora_down" in key or "lora_A" in key):
            return TEXT_WIDTHS.get(value["shape"][-1], "sdxl" if value["shape"][-1] == 2048 else "?")
    return "?"


def _embedding(path: Path) -> tuple[str, str]:
    if path.suffix != ".safetensors":
        return "?", f"{path.suffix} file (read with weights_only when used)"
    header = checkpoints.safetensors_header(path)
    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    if "clip_l" in shapes and "clip_g" in shapes:
        return "sdxl", f"{shapes['clip_l'][0]} vectors"
    if len(shapes) == 1:
        shape = next(iter(shapes.values()))
        return TEXT_WIDTHS.get(shape[-1], "?"), f"{shape[0]} vectors of {shape[-1]}"
    return "?", f"{len(shapes)} tensors: not a textual-inversion file"


def _controlnet(path: Path) -> tuple[str, str]:
    return controlnets.family_of(path), "diffusers folder" if path.is_dir() else "single file"


def _text_encoder(path: Path) -> tuple[str, str]:
    if path.is_dir() or path.suffix != ".safetensors":
        return "?", "folder" if path.is_dir() else f"{path.suffix} file"
    found = components.text_encoder_kind(path)
    if found.kind == "t5":
        return "t5", f"T5 encoder, {found.width} wide (Dual / Triple CLIP)"
    name = {768: "clip_l", 1280: "clip_g"}.get(found.width, "clip")
    return name, f"CLIP text encoder, {found.width} wide (Dual / Triple CLIP)"


def _diffusion_model(path: Path) -> tuple[str, str]:
    """A denoiser on its own (ComfyUI's diffusion_models/unet): which architecture its keys are."""
    if path.is_dir() or path.suffix != ".safetensors":
        return "?", "folder" if path.is_dir() else f"{path.suffix} file"
    try:
        return components.diffusion_model_skeleton(path), "diffusion model (Load Diffusion Model)"
    except checkpoints.CheckpointProblem:
        keys = {k.removeprefix("model.diffusion_model.") for k in checkpoints.safetensors_keys(path)}
        if "label_emb.0.0.weight" in keys:
            return "sdxl", "UNet on its own: not loadable yet"
        return "?", "unknown architecture"


def _upscaler(path: Path) -> tuple[str, str]:
    """An upscale model: its architecture from the tensor names (and shapes) in the header."""
    from types import SimpleNamespace

    from app.runtime.upscalers import ARCHITECTURES

    if path.suffix != ".safetensors":
        return "upscaler", f"{path.suffix} file (read with weights_only when used)"
    header = checkpoints.safetensors_header(path)
    shapes = {
        k: SimpleNamespace(shape=v["shape"], ndim=len(v["shape"]))
        for k, v in header.items()
        if k != "__metadata__"
    }
    found = next((a.NAME for a in ARCHITECTURES if a.matches(shapes)), "not an architecture Nodeloom reads")
    return "upscaler", found


def _unknown(path: Path) -> tuple[str, str]:
    return "?", "not inspected"


_READERS: dict[str, Any] = {
    "checkpoints": _checkpoint,
    "vae": _vae,
    "loras": _lora,
    "embeddings": _embedding,
    "controlnet": _controlnet,
    "text_encoders": _text_encoder,
    "diffusion_models": _diffusion_model,
    "upscale_models": _upscaler,
}
