"""Prompt text -> CLIP embeddings, with A1111-style weighting and long-prompt chunking.

Convention (AUTOMATIC1111's, also what ComfyUI users know as "A1111 token normalization: mean"):
- Weights: `(words:1.3)` multiplies, `(words)` x1.1, `[words]` /1.1; nesting multiplies; `\\(` is a literal.
- Chunks: the prompt's tokens are split every 75 tokens; each chunk is wrapped in start/end tokens, padded
  to 77 with the tokenizer's pad token, encoded alone, and the chunk outputs are concatenated (77*k tokens).
- Weighting: each token's embedding is multiplied by its weight, then the chunk is rescaled so its mean
  equals the unweighted mean. With no weights the result equals diffusers' `encode_prompt` exactly.
- Clip skip: 1 = the last layer (default), 2 = the penultimate layer (+ final layer norm), like A1111;
  for families that read the penultimate layer already (SDXL), clip skip counts back from there, unnormed,
  as diffusers' `clip_skip` does.
- Textual inversion: `embedding:NAME` puts NAME's vectors where the token embeddings would be (see tokenize).

torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHUNK = 75
EMBEDDING = re.compile(r"embedding:([^\s,()\[\]:]+)")
_TOKEN = re.compile(r"\\[()\[\]\\]|\(|\)|\[|\]|:\s*([+-]?\d*\.?\d+)\s*\)|[^\\()\[\]:]+|:")


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) pieces; unbalanced brackets are closed at the end."""
    pieces: list[tuple[str, float]] = []
    stack: list[tuple[str, int]] = []  # open bracket and index of the first piece inside it

    def close(bracket: str, factor: float | None = None) -> None:
        opened, first = stack.pop()
        scale = factor if factor is not None else (1.1 if opened == "(" else 1 / 1.1)
        for index in range(first, len(pieces)):
            pieces[index] = (pieces[index][0], pieces[index][1] * scale)

    for match in _TOKEN.finditer(text):
        token, number = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append((token[1:], 1.0))
        elif token in "([":
            stack.append((token, len(pieces)))
        elif number is not None and stack and stack[-1][0] == "(":
            close("(", float(number))
        elif token == ")" and stack and stack[-1][0] == "(":
            close("(")
        elif token == "]" and stack and stack[-1][0] == "[":
            close("[")
        else:
            pieces.append((token, 1.0))
    while stack:
        close(stack[-1][0])
    merged: list[tuple[str, float]] = []
    for piece, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece, weight)
        else:
            merged.append((piece, weight))
    return [(piece, weight) for piece, weight in merged if piece]


@dataclass
class Chunk:
    """One 77-token window: ids (start, up to 75 tokens, end, padding), a weight per token, and the
    textual-inversion vectors that replace the token embeddings at some positions."""

    ids: list[int]
    weights: list[float]
    vectors: dict[int, Any] = field(default_factory=dict)


Vectors = Callable[[str], Any]  # embedding name -> (n, dim) tensor of this encoder's vectors
EMBEDDING_BLOCK = -1  # stands for an embedding's vectors among the token ids until chunks are built


def tokenize(tokenizer: Any, text: str, vectors: Vectors | None = None) -> list[Chunk]:
    """The prompt's 77-token chunks. `embedding:NAME` (ComfyUI's syntax, weights apply as to any word)
    becomes NAME's vectors, looked up with `vectors`; an embedding never straddles two chunks (A1111)."""
    tokens: list[tuple[int, float, Any]] = []  # (id, weight, an embedding's rows or None)
    for piece, weight in parse_weights(text):
        for index, part in enumerate(EMBEDDING.split(piece)):
            if index % 2 == 0:
                ids = tokenizer(part, add_special_tokens=False).input_ids if part else []
                tokens.extend((token, weight, None) for token in ids)
            elif vectors is None:
                raise ValueError(f"embedding:{part} is used, but no embeddings are available here")
            else:
                rows = vectors(part)
                tokens.append((EMBEDDING_BLOCK, weight, rows))
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    chunks: list[Chunk] = []
    body: list[tuple[int, float, Any]] = []

    def close() -> None:
        chunk = Chunk([start], [1.0])
        for token, weight, rows in body:
            if rows is None:
                chunk.ids.append(token)
                chunk.weights.append(weight)
                continue
            for row in rows:
                chunk.vectors[len(chunk.ids)] = row
                chunk.ids.append(start)  # a placeholder id: its embedding is replaced, it is never the end
                chunk.weights.append(weight)
        padding = CHUNK + 1 - len(chunk.ids)
        chunk.ids += [end] + [pad] * padding
        chunk.weights += [1.0] * (padding + 1)
        chunks.append(chunk)

    used = 0
    for token, weight, rows in tokens:
        size = 1 if rows is None else len(rows)
        if size > CHUNK:
            raise ValueError(f"an embedding of {size} vectors does not fit in one {CHUNK}-token chunk")
        if used + size > CHUNK:
            close()
            body, used = [], 0
        body.append((token, weight, rows))
        used += size
    if body or not chunks:
        close()
    return chunks


def encode(
    text_encoder: Any,
    tokenizer: Any,
    text: str,
    clip_skip: int,
    device: Any,
    penultimate: bool = False,
    vectors: Vectors | None = None,
) -> tuple[Any, Any]:
    """(embeddings (1, 77*k, dim), pooled (1, dim) of the first chunk) of `text` through one encoder.

    `penultimate`: read hidden_states[-(clip_skip + 1)] without the final layer norm, as SDXL does;
    `vectors`: the textual-inversion lookup (see `tokenize`)."""
    return encode_chunks(text_encoder, tokenize(tokenizer, text, vectors), clip_skip, device, penultimate)


def encode_chunks(
    text_encoder: Any, chunks: list[Chunk], clip_skip: int, device: Any, penultimate: bool = False
) -> tuple[Any, Any]:
    """Encode tokenized chunks; see `encode`."""
    import torch

    outputs, pooled = [], None
    for chunk in chunks:
        ids = torch.tensor([chunk.ids], device=device)
        hidden, chunk_pooled = _encode_ids(text_encoder, ids, clip_skip, penultimate, chunk.vectors)
        outputs.append(_weighted(hidden, chunk.weights))
        pooled = chunk_pooled if pooled is None else pooled
    return torch.cat(outputs, dim=1), pooled


def _encode_ids(
    text_encoder: Any, ids: Any, clip_skip: int, penultimate: bool, vectors: dict
) -> tuple[Any, Any]:
    handle = None
    if vectors:
        handle = text_encoder.get_input_embeddings().register_forward_hook(_replace_rows(vectors))
    try:
        if clip_skip <= 1 and not penultimate:
            output = text_encoder(ids)
            return output.last_hidden_state, _pooled(output)
        output = text_encoder(ids, output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    hidden = output.hidden_states[-(clip_skip + penultimate)]
    if not penultimate:
        hidden = getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)
    return hidden, _pooled(output)


def _pooled(output: Any) -> Any:
    """The projected end-token embedding (CLIPTextModelWithProjection) or the pooled output (CLIPTextModel)."""
    projected = getattr(output, "text_embeds", None)
    return projected if projected is not None else output.pooler_output


def _replace_rows(vectors: dict[int, Any]) -> Callable[..., Any]:
    def hook(_module: Any, _args: Any, embedded: Any) -> Any:
        embedded = embedded.clone()
        for position, row in vectors.items():
            embedded[:, position] = row.to(embedded.device, embedded.dtype)
        return embedded

    return hook


def encode_prompt(
    encoders: list[tuple[Any, Any, Any]], text: str, clip_skip: int, device: Any, vectors: Callable[..., Any]
) -> tuple[Any, Any]:
    """(embeddings, pooled) of `text` through a family's CLIP encoders: `encoders` lists (spec, module,
    tokenizer) with `spec` an app.runtime.families.TextEncoder; their outputs are concatenated on the
    feature axis (SDXL: 768 + 1280), and so are the pooled embeddings of the encoders the family marks
    (SDXL: CLIP-G's; SD3: both), else the first encoder's. `vectors(spec)` gives the textual-inversion
    lookup for an encoder. Encoders whose tokenizers split a prompt into different numbers of chunks
    (CLIP-G reads each `!` as a token) get empty chunks appended."""
    import torch

    tokenized = [tokenize(tokenizer, text, vectors(spec)) for spec, _, tokenizer in encoders]
    most = max(len(chunks) for chunks in tokenized)
    hidden, pooled, marked = [], [], []
    for (spec, module, tokenizer), chunks in zip(encoders, tokenized, strict=True):
        chunks = chunks + [tokenize(tokenizer, "")[0]] * (most - len(chunks))
        states, pooled_here = encode_chunks(module, chunks, clip_skip, device, spec.penultimate)
        hidden.append(states)
        (marked if spec.pooled else pooled).append(pooled_here)
    return torch.cat(hidden, dim=-1), torch.cat(marked or pooled[:1], dim=-1)


def encode_t5(text_encoder: Any, tokenizer: Any, text: str, max_length: int, device: Any) -> Any:
    """(1, max_length, dim) T5 embeddings of `text`: its tokens, the end token, padding to `max_length`
    (longer prompts are cut, as the SD3 and Flux pipelines do). Weights apply as for CLIP: each token's
    embedding times its weight, rescaled to the unweighted mean; `embedding:NAME` is for CLIP encoders
    and is left out here. With no weights this equals the pipelines' T5 embeddings."""
    import torch

    ids: list[int] = []
    weights: list[float] = []
    for piece, weight in parse_weights(EMBEDDING.sub("", text)):
        found = tokenizer(piece, add_special_tokens=False).input_ids
        ids += found
        weights += [weight] * len(found)
    ids, weights = ids[: max_length - 1], weights[: max_length - 1]
    padding = max_length - len(ids) - 1
    ids += [tokenizer.eos_token_id] + [tokenizer.pad_token_id] * padding
    weights += [1.0] * (padding + 1)
    return _weighted(text_encoder(torch.tensor([ids], device=device))[0], weights)


def _weighted(hidden: Any, weights: list[float]) -> Any:
    """Each token's embedding times its weight, rescaled so the mean is the unweighted one (A1111)."""
    import torch

    if all(w == 1.0 for w in weights):
        return hidden
    mean = hidden.float().mean()
    hidden = hidden * torch.tensor(weights, device=hidden.device, dtype=hidden.dtype)[None, :, None]
    return hidden * (mean / hidden.float().mean()).to(hidden.dtype)


def even_out(first: Any, first_pad: Any, second: Any, second_pad: Any) -> tuple[Any, Any]:
    """Give two prompts' embeddings the same length by appending empty-prompt chunks to the shorter one
    (A1111's rule, so a long positive prompt still pairs with a short negative one)."""
    import torch

    def grow(short: Any, pad: Any, length: int) -> Any:
        missing = (length - short.shape[1]) // (CHUNK + 2)
        filler = pad if pad is not None else short[:, -(CHUNK + 2) :]
        return torch.cat(
            [short] + [filler.to(short.device, short.dtype).expand(short.shape[0], -1, -1)] * missing, dim=1
        )

    if first.shape[1] < second.shape[1]:
        first = grow(first, first_pad, second.shape[1])
    elif second.shape[1] < first.shape[1]:
        second = grow(second, second_pad, first.shape[1])
    return first, second
