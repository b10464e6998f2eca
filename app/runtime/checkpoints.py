"""What a checkpoint is, read from its files without loading weights: layout, config skeleton, family.

A checkpoint is a diffusers folder (model_index.json + unet/ vae/ text_encoder/ tokenizer/ scheduler/) or
one .safetensors file in the original (LDM) key layout. A single file needs a config skeleton: a weight-free
diffusers folder (model_index.json and the component configs) naming the architecture. Skeletons are looked
up by name in `<model root>/configs/` and then in the shipped `assets/configs/`; "auto" picks one from the
file's keys (sd15, sd2, sdxl, sdxl_refiner). Tokenizers need not be in a skeleton: the CLIP ones ship in
assets/tokenizers. The family names what a model is compatible with: sd15, sd2, sdxl, sdxl_refiner for the
standard architectures, "tiny-<name>" for anything else (each small test/embedded model is its own family);
`architecture` names the app/runtime/families class that runs it.

Pure Python (json + the safetensors header): never import torch or Qt here.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

from app.files import ASSETS, FileResolver, fingerprint
from app.runtime import families
from app.runtime.families import Family

SHIPPED_CONFIGS = ASSETS / "configs"

# A key that only the text encoder of each original layout has.
LAYOUT_KEYS = {
    "sdxl": "conditioner.embedders.1.model.ln_final.weight",
    "sdxl_refiner": "conditioner.embedders.0.model.ln_final.weight",
    "sd2": "cond_stage_model.model.ln_final.weight",
    "sd15": "cond_stage_model.transformer.text_model.final_layer_norm.weight",
}


DIT_PREFIX = "model.diffusion_model."  # ComfyUI's prefix of the denoiser in a checkpoint file


class CheckpointProblem(ValueError):
    """A checkpoint that cannot be used; the message says which file and what is missing."""


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model_index.json").is_file()


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file: {name: {dtype, shape, data_offsets}, "__metadata__": {...}}."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                raise CheckpointProblem(f"{path}: not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", head)
            if length > 100_000_000:
                raise CheckpointProblem(f"{path}: not a safetensors file (header size {length})")
            header = json.loads(handle.read(length))
    except OSError as error:
        raise CheckpointProblem(f"{path}: cannot read it ({error.strerror or error})") from None
    except ValueError:
        raise CheckpointProblem(f"{path}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointProblem(f"{path}: not a safetensors file (header is not a table)")
    return header


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a .safetensors file (reads only its JSON header)."""
    return [key for key in safetensors_header(path) if key != "__metadata__"]


def parameter_count(path: Path, prefix: str = "") -> int:
    """How many numbers a .safetensors file holds (every one in a folder), names under `prefix` only; from
    the headers alone. Pickled and missing files count nothing."""
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    return sum(
        count
        for file in files
        if file.suffix == ".safetensors" and file.is_file()
        for key, count in _numbers(file)
        if key.startswith(prefix)
    )


_NUMBERS: dict[tuple[str, int, int], tuple[tuple[str, int], ...]] = {}


def _numbers(file: Path) -> tuple[tuple[str, int], ...]:
    """(tensor name, element count) of every tensor in a .safetensors file: its header read once per
    version of the file (a run estimate asks for the same file under several prefixes, on every run)."""
    stat = file.stat()
    stamp = (str(file), stat.st_size, stat.st_mtime_ns)
    if stamp not in _NUMBERS:
        _NUMBERS[stamp] = tuple(
            (key, math.prod(int(n) for n in value.get("shape", ())))
            for key, value in safetensors_header(file).items()
            if key != "__metadata__" and isinstance(value, dict)
        )
    return _NUMBERS[stamp]


def detect_layout(path: Path) -> str | None:
    """The skeleton a single file's keys name: sd15, sd2, sdxl or sdxl_refiner, or for a Flux / SD3
    transformer (on its own or in an all-in-one file) the shipped skeleton its shapes fit; else None."""
    keys = set(safetensors_keys(path))
    return next((name for name, key in LAYOUT_KEYS.items() if key in keys), None) or dit_skeleton(path)


def dit_skeleton(path: Path) -> str | None:
    """The shipped skeleton (flux-dev, sd3.5-large, ...) of the diffusion transformer in a .safetensors
    file, bare or under ComfyUI's `model.diffusion_model.`, asked of every family; None when none fits."""
    found = {
        key.removeprefix(DIT_PREFIX): tuple(value.get("shape", ()))
        for key, value in safetensors_header(path).items()
        if key != "__metadata__"
    }
    return next((name for family in families.FAMILIES if (name := family.skeleton_for(found))), None)


def config_dirs(resolver: FileResolver | None = None) -> list[Path]:
    """Folders holding config skeletons, best first."""
    resolver = resolver or FileResolver()
    return [*resolver.model_dirs("configs"), SHIPPED_CONFIGS]


def find_skeleton(path: Path, config: str, resolver: FileResolver | None = None) -> Path:
    """The skeleton folder for a single-file checkpoint (raises CheckpointProblem saying where it looked)."""
    if path.suffix != ".safetensors":
        raise CheckpointProblem(
            f"{path.name}: only .safetensors single files are loaded (pickled .ckpt files can run code)"
        )
    name = config
    if config == "auto":
        name = detect_layout(path) or ""
        if not name:
            raise CheckpointProblem(
                f"{path.name}: its keys match no known layout ({', '.join(LAYOUT_KEYS)}, Flux, SD3); "
                "name a config skeleton in the loader's 'config' param"
            )
    return find_config(path, name, "model_index.json", resolver)


def find_config(path: Path, name: str, marker: str, resolver: FileResolver | None = None) -> Path:
    """The config skeleton folder `name` (a plain folder name, never a path) that holds `marker`, from
    <model root>/configs or the shipped assets/configs; CheckpointProblem says where it looked."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise CheckpointProblem(
            f"{path.name}: config {name!r} must be the name of a skeleton folder, not a path"
        )
    folders = config_dirs(resolver)
    for folder in folders:
        if (folder / name / marker).is_file():
            return folder / name
    where = ", ".join(str(f) for f in folders)
    raise CheckpointProblem(
        f"{path.name}: config skeleton {name!r} not found (looked in {where}; it needs {marker})"
    )


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a config file (CheckpointProblem naming the file when it is not one)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointProblem(f"{path}: cannot read it ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointProblem(f"{path}: not a JSON object")
    return data


PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def pickle_only(folder: Path) -> str | None:
    """Why a diffusers (component) folder will not load: its weights are pickles only (they can run code
    when read), or None when it has .safetensors weights or none at all."""
    if any(folder.glob("*.safetensors")):
        return None
    pickled = sorted(p.name for pattern in PICKLES for p in folder.glob(pattern))
    if not pickled:
        return None
    return f"{folder}: weights only in pickle files ({', '.join(pickled[:3])}), which can run code; convert them to .safetensors"


def sidecar_family(folder: Path) -> str | None:
    """The family a small model names in `nodeloom.json` in its folder ({"family": "tiny-shapes"}), if any."""
    sidecar = folder / "nodeloom.json"
    if not sidecar.is_file():
        return None
    family = read_json(sidecar).get("family")
    if not isinstance(family, str) or not family:
        raise CheckpointProblem(f"{sidecar}: 'family' must be a name")
    return family


DENOISERS = ("unet", "transformer")


def denoiser_part(model_index: dict[str, Any]) -> str:
    """The denoiser's component name in a model_index.json: `transformer` (DiTs) or `unet`."""
    entry = model_index.get("transformer")
    return "transformer" if isinstance(entry, list) and entry and entry[0] else "unet"


def denoiser_config(folder: Path) -> dict[str, Any]:
    """The config.json of the denoiser (unet/ or transformer/) of a diffusers folder or skeleton."""
    return read_json(folder / denoiser_part(read_json(folder / "model_index.json")) / "config.json")


def architecture(folder: Path) -> type[Family]:
    """The family class that runs the diffusers folder or skeleton at `folder` (model_index + the
    denoiser's config)."""
    try:
        return families.detect(read_json(folder / "model_index.json"), denoiser_config(folder))
    except families.UnknownFamily as error:
        raise CheckpointProblem(f"{folder}: {error}") from None


# Sizes that only the released models of a transformer family have (else it is a small test model).
STANDARD_TRANSFORMERS = {
    "sd3": {"in_channels": 16, "joint_attention_dim": 4096},
    "flux": {"in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24},
}


def family_of_config(folder: Path, name: str) -> str:
    """sd15 / sd2 / sdxl / sdxl_refiner / sd3 / flux for the released architectures, else "tiny-<name>"."""
    family = architecture(folder)
    compatibility = _standard(family, denoiser_config(folder)) or _tiny(name)
    families.remember(compatibility, family)
    return compatibility


def _standard(family: type[Family], config: dict[str, Any]) -> str | None:
    if family.name in STANDARD_TRANSFORMERS:
        wanted = STANDARD_TRANSFORMERS[family.name]
        return family.name if all(config.get(k) == v for k, v in wanted.items()) else None
    channels = config.get("block_out_channels")
    channels = list(channels) if isinstance(channels, list) else []
    if config.get("addition_embed_type") == "text_time":
        return {(320, 640, 1280): "sdxl", (384, 768, 1536, 1536): "sdxl_refiner"}.get(tuple(channels))
    if channels == [320, 640, 1280, 1280]:
        return {768: "sd15", 1024: "sd2"}.get(config.get("cross_attention_dim"))
    return None


def _tiny(name: str) -> str:
    stem = name.removesuffix(".safetensors")
    return stem if stem.startswith("tiny-") else f"tiny-{stem}"


def family_of(path: Path, config: str = "auto", resolver: FileResolver | None = None) -> str:
    """The family of the checkpoint at `path` (a diffusers folder or a single file); remembered per
    (path, config, modification times of the path and its UNet config), since validation asks often."""
    stamp = (str(path), config, _mtime(path), *(_mtime(path / p / "config.json") for p in DENOISERS))
    if stamp not in _FAMILIES:
        if is_diffusers_folder(path):
            _FAMILIES[stamp] = family_of_config(path, path.name)
        else:
            skeleton = find_skeleton(path, config, resolver)
            _FAMILIES[stamp] = family_of_config(skeleton, path.name)
    return _FAMILIES[stamp]


_FAMILIES: dict[tuple, str] = {}


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def weights_fingerprint(path: Path) -> str:
    """sha256 of the (path, size, mtime) of every file of a checkpoint: cheap, changes when they do."""
    text = json.dumps(fingerprint(path), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_CONTENT_HASHES: dict[str, str] = {}


def content_hash(path: Path) -> str:
    """sha256 of a checkpoint's weight bytes (all weight files of a folder, in name order), cached per
    process by fingerprint. Reads every byte once: about a second per GB."""
    key = weights_fingerprint(path)
    if key not in _CONTENT_HASHES:
        digest = hashlib.sha256()
        files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
        for item in files:
            with item.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        _CONTENT_HASHES[key] = digest.hexdigest()
    return _CONTENT_HASHES[key]
