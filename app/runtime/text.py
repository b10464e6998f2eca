"""Prompt text -> CLIP embeddings, with A1111-style weighting and long-prompt chunking.

Convention (AUTOMATIC1111's, also what ComfyUI users know as "A1111 token normalization: mean"):
- Weights: `(words:1.3)` multiplies, `(words)` x1.1, `[words]` /1.1; nesting multiplies; `\\(` is a literal.
- Chunks: the prompt's tokens are split every 75 tokens; each chunk is wrapped in start/end tokens, padded
  to 77 with the tokenizer's pad token, encoded alone, and the chunk outputs are concatenated (77*k tokens).
- Weighting: each token's embedding is multiplied by its weight, then the chunk is rescaled so its mean
  equals the unweighted mean. With no weights the result equals diffusers' `encode_prompt` exactly.
- Clip skip: 1 = the last layer (default), 2 = the penultimate layer (+ final layer norm), like A1111.

torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

import re
from typing import Any

CHUNK = 75
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


def tokenize(tokenizer: Any, text: str) -> tuple[list[list[int]], list[list[float]]]:
    """Token ids and weights per 77-token chunk (start + up to 75 tokens + end + padding)."""
    ids: list[int] = []
    weights: list[float] = []
    for piece, weight in parse_weights(text):
        piece_ids = tokenizer(piece, add_special_tokens=False).input_ids
        ids.extend(piece_ids)
        weights.extend([weight] * len(piece_ids))
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    chunks, chunk_weights = [], []
    for first in range(0, max(len(ids), 1), CHUNK):
        body, body_weights = ids[first : first + CHUNK], weights[first : first + CHUNK]
        padding = CHUNK - len(body)
        chunks.append([start, *body, end] + [pad] * padding)
        chunk_weights.append([1.0, *body_weights, 1.0] + [1.0] * padding)
    return chunks, chunk_weights


def encode(text_encoder: Any, tokenizer: Any, text: str, clip_skip: int, device: Any) -> tuple[Any, Any]:
    """(embeddings (1, 77*k, dim), pooled (1, dim) of the first chunk) for `text`."""
    import torch

    chunks, chunk_weights = tokenize(tokenizer, text)
    outputs, pooled = [], None
    for ids, weights in zip(chunks, chunk_weights, strict=True):
        hidden, chunk_pooled = _encode_ids(text_encoder, torch.tensor([ids], device=device), clip_skip)
        if any(w != 1.0 for w in weights):
            original_mean = hidden.float().mean()
            scale = torch.tensor(weights, device=device, dtype=hidden.dtype)[None, :, None]
            hidden = hidden * scale
            hidden = hidden * (original_mean / hidden.float().mean()).to(hidden.dtype)
        outputs.append(hidden)
        pooled = chunk_pooled if pooled is None else pooled
    return torch.cat(outputs, dim=1), pooled


def _encode_ids(text_encoder: Any, ids: Any, clip_skip: int) -> tuple[Any, Any]:
    if clip_skip <= 1:
        output = text_encoder(ids)
        return output[0], output[1]
    output = text_encoder(ids, output_hidden_states=True)
    norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
    return norm(output.hidden_states[-clip_skip]), output[1]


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
