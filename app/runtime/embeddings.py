"""Textual-inversion embeddings: `embedding:NAME` in a prompt (ComfyUI's syntax) names a file under the
model roots' `embeddings/` folders (NAME, NAME.safetensors, NAME.pt or NAME.bin; .pt/.bin are read with
torch.load(weights_only=True), so no code runs).

Formats: A1111 `.pt` ({"string_to_param": {"*": vectors}}), A1111/civitai `.safetensors` ({"emb_params":
vectors}), SDXL ({"clip_l": ..., "clip_g": ...}: one set per text encoder) and diffusers' learned_embeds
({"<token>": vectors}). A file with one set of vectors serves a one-encoder family; an SDXL family needs
a file with both sets. Vectors go in place of the token embeddings (app/runtime/text.py), which is what
diffusers' `load_textual_inversion` achieves by adding tokens. torch is imported inside the functions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from app.files import FileResolver
from app.runtime.families import TextEncoder

EXTENSIONS = ("", ".safetensors", ".pt", ".bin")
KIND = "model:embeddings"
_NAMES = re.compile(r"embedding:([^\s,()\[\]:]+)")


class EmbeddingProblem(ValueError):
    """An embedding that cannot be used here; the message names it."""


def names_in(text: str) -> list[str]:
    """The embedding names a prompt uses, in order, each once."""
    return list(dict.fromkeys(_NAMES.findall(text)))


def candidates(name: str) -> tuple[str, ...]:
    """File names that may hold embedding `name`, in the order they are tried."""
    return tuple(name + ext for ext in EXTENSIONS if not (ext and name.endswith(ext)))


def find(name: str, resolver: FileResolver) -> Path:
    """The file of embedding `name` (FileProblem naming the folders searched when there is none)."""
    return resolver.resolve_first(KIND, candidates(name))


def read(path: Path) -> dict[str, Any]:
    """The vector sets of an embedding file: {"clip_l": (n, 768), "clip_g": (n, 1280)} or {"*": (n, d)}."""
    from app.runtime.lora import LoraProblem, read_state_dict

    try:
        tensors, _ = read_state_dict(path)
    except LoraProblem as error:
        raise EmbeddingProblem(str(error)) from None
    if isinstance(tensors.get("string_to_param"), dict):
        tensors = tensors["string_to_param"]
    sets = {k: v for k, v in tensors.items() if hasattr(v, "ndim")}
    if "clip_l" in sets or "clip_g" in sets:
        return {k: _rows(v) for k, v in sets.items() if k in ("clip_l", "clip_g")}
    if len(sets) == 1:
        return {"*": _rows(next(iter(sets.values())))}
    if "emb_params" in sets:
        return {"*": _rows(sets["emb_params"])}
    raise EmbeddingProblem(
        f"{path.name}: not a textual-inversion file (keys: {', '.join(list(tensors)[:5])})"
    )


def _rows(vectors: Any) -> Any:
    return vectors.reshape(-1, vectors.shape[-1]).float() if vectors.ndim != 2 else vectors.float()


def vectors_for(sets: dict[str, Any], name: str, encoder: TextEncoder, width: int, only_encoder: bool) -> Any:
    """The vectors of embedding `name` for `encoder` (token embeddings `width` wide)."""
    vectors = sets.get(encoder.embedding_key)
    if vectors is None and only_encoder:
        vectors = sets.get("*")
    if vectors is None:
        have = ", ".join(sets) if "*" not in sets else "one set of vectors"
        raise EmbeddingProblem(
            f"embedding {name!r} has no vectors for this model's {encoder.embedding_key} encoder (it has {have})"
        )
    if vectors.shape[-1] != width:
        raise EmbeddingProblem(
            f"embedding {name!r} is {vectors.shape[-1]} wide; this model's {encoder.embedding_key} "
            f"encoder takes {width} (an embedding for another model family?)"
        )
    return vectors
