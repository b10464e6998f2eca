"""The tokenizers the families use, built from the shipped files: CLIP (assets/tokenizers/clip) for every
SD-class family, T5 v1.1 (assets/tokenizers/t5) for SD3's third and Flux's second text encoder.

One vocabulary and merge list serve CLIP-L and CLIP-G; only the pad token differs, and we follow diffusers
(whose oracles our tests use) rather than ComfyUI: CLIP-L pads with `<|endoftext|>`; CLIP-G as SDXL's and
SD3's `tokenizer_2` pads with `"!"` declared as a special token, so `!` typed in a prompt becomes id 0 for
that encoder, exactly as StableDiffusionXLPipeline tokenizes it (ComfyUI keeps it as the `!</w>` token).
A diffusers folder that carries its own tokenizer folders uses those instead. Tokenizers are built once per
process. transformers is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from app.files import ASSETS

CLIP_FILES = ASSETS / "tokenizers" / "clip"
T5_FILES = ASSETS / "tokenizers" / "t5"
MAX_LENGTH = 77


@functools.cache
def _vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    vocab = json.loads((CLIP_FILES / "vocab.json").read_text("utf-8"))
    lines = (CLIP_FILES / "merges.txt").read_text("utf-8").split("\n")[1:]
    return vocab, tuple(tuple(line.split()) for line in lines if line)


@functools.cache
def clip(pad: str = "<|endoftext|>") -> Any:
    """The CLIP tokenizer padding with `pad` (see the module docstring for which family uses which)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad, model_max_length=MAX_LENGTH)


@functools.cache
def t5() -> Any:
    """The T5 v1.1 tokenizer (ids equal FLUX.1's tokenizer_2 and SD3's tokenizer_3; see its README)."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(T5_FILES, local_files_only=True)
