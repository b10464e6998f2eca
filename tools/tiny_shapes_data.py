"""The tiny-shapes world: captions, randomly drawn training images, and the grammar's tokenizer.

Images come from nodes/shapes.py `draw` (the same drawing the Draw Shape node uses); the colour jitter lives
here, in the training-data generator, not in the node. Imports numpy and transformers; never Qt.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nodes.shapes import COLOURS, SHAPES, draw
from tools.make_tiny_random_model import byte_symbols

COLOUR_NAMES = tuple(COLOURS)
GRAMMAR_WORDS = ("a", "on", "background", *COLOUR_NAMES, *SHAPES)
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
JITTER = 12  # max per-channel colour jitter, in 0..255 units
SIZE_RANGE = (0.14, 0.36)  # half-extent as a fraction of the side


def caption(colour: str, shape: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def all_combinations() -> list[tuple[str, str, str]]:
    """Every (colour, shape, background) with colour != background: 6 * 5 * 3 = 90."""
    return [(c, s, b) for c in COLOUR_NAMES for s in SHAPES for b in COLOUR_NAMES if b != c]


@dataclass(frozen=True)
class Sample:
    colour: str
    shape: str
    background: str

    @property
    def caption(self) -> str:
        return caption(self.colour, self.shape, self.background)


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    shifted = np.clip(np.asarray(rgb) + rng.integers(-JITTER, JITTER + 1, 3), 0, 255)
    return tuple(int(v) for v in shifted)


def random_sample(
    rng: np.random.Generator, size: int = 64, outline: float = 0.0
) -> tuple[np.ndarray, Sample]:
    """One uniformly chosen combination drawn at a random place and size, colours jittered (outline > 0:
    the shape's edge only, that thick; see nodes.shapes.draw)."""
    combos = all_combinations()
    colour, shape, background = combos[int(rng.integers(len(combos)))]
    half = float(rng.uniform(*SIZE_RANGE))
    x, y = (float(v) for v in rng.uniform(half + 0.02, 1.0 - half - 0.02, 2))
    fore, back = _jitter(COLOURS[colour], rng), _jitter(COLOURS[background], rng)
    image = draw(shape, fore, back, x, y, half, size, size, outline)
    return image, Sample(colour, shape, background)


def random_batch(
    rng: np.random.Generator, count: int, size: int = 64, outline: float = 0.0
) -> tuple[np.ndarray, list[Sample]]:
    """(count, size, size, 3) uint8 images and their labels."""
    pairs = [random_sample(rng, size, outline) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def learn_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Byte-pair merges learned on the grammar words until each word is one symbol.

    Learning (rather than writing merges word by word) keeps the rank order consistent, so applying the
    merges to a grammar word replays exactly the learning steps and ends in one token.
    """
    split = {w: [*w[:-1], w[-1] + "</w>"] for w in words}
    merges: list[tuple[str, str]] = []
    while any(len(parts) > 1 for parts in split.values()):
        pairs = Counter(p for parts in split.values() for p in zip(parts, parts[1:], strict=False))
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        for word, parts in split.items():
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            split[word] = merged
    return merges


def build_tokenizer(max_length: int = 77):
    """A CLIPTokenizer over byte characters plus the grammar's merges; every grammar word is one token."""
    from transformers import CLIPTokenizer

    base = byte_symbols()
    merges = learn_merges(GRAMMAR_WORDS)
    tokens = base + [c + "</w>" for c in base] + ["".join(m) for m in merges] + list(SPECIAL_TOKENS)
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    for word in GRAMMAR_WORDS:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"grammar word {word!r} tokenizes to {len(ids)} tokens")
    return tokenizer


def write_vocab_files(folder: Path) -> None:
    """vocab.json + merges.txt next to the tokenizer, for readers that want the classic CLIP files."""
    tokenizer = build_tokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in learn_merges(GRAMMAR_WORDS)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")
