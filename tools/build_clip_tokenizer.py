"""Rebuild the shipped CLIP tokenizer files (assets/tokenizers/clip) from a PyPI artifact, offline of any hub.

The byte-pair merges of OpenAI's CLIP tokenizer ship inside the `open-clip-torch` wheel as
`open_clip/bpe_simple_vocab_16e6.txt.gz`. This script downloads that wheel with `pip download --no-deps`
(never installing it: open-clip-torch pulls torchvision), rebuilds the vocabulary the way CLIP's
SimpleTokenizer does (256 byte symbols, the same with `</w>`, the 48 894 merges, the two special tokens:
49 408 entries) and writes `vocab.json` and `merges.txt` byte-identical to the files every SD1.x, SD2,
SDXL, SD3 and Flux diffusers folder carries (checked by md5 before anything is written).

    python -m tools.build_clip_tokenizer [--wheel WHEEL] [--out assets/tokenizers/clip]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "assets" / "tokenizers" / "clip"
WHEEL = "open-clip-torch==3.3.0"
MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
MD5 = {
    MEMBER: "933b7abbbbde62c36f02f0e6ccde464f",
    "vocab.json": "a3933521163a0e76cee6094f1d72a9cc",
    "merges.txt": "d2bc10797e70c920c14c69729ecdab34",
}
MERGES = 49152 - 256 - 2  # CLIP keeps the first 48 894 merges of the file


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 bytes, in the order CLIP numbers them: the printable
    bytes first (`!`..`~`, `¡`..`¬`, `®`..`ÿ`), then the others mapped to chr(256 + n)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def build(bpe_gz: bytes) -> dict[str, bytes]:
    """vocab.json and merges.txt from the gzipped merges list."""
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")[1 : MERGES + 1]
    base = byte_symbols()
    tokens = base + [s + "</w>" for s in base] + ["".join(m.split()) for m in lines]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return {
        "vocab.json": (json.dumps(vocab, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode(
            "utf-8"
        ),
        "merges.txt": ("#version: 0.2\n" + "\n".join(lines) + "\n").encode("utf-8"),
    }


def _check(name: str, data: bytes) -> None:
    digest = hashlib.md5(data).hexdigest()
    if digest != MD5[name]:
        sys.exit(f"{name}: md5 {digest}, expected {MD5[name]}; nothing written")


def download(requirement: str, folder: Path, pattern: str) -> Path:
    """`pip download --no-deps` one package file into `folder` (never installing it); its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(folder)],
        check=True,
    )
    return next(folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--wheel", type=Path, help="a downloaded open-clip-torch wheel (default: download it)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        wheel = args.wheel or download(WHEEL, Path(temp), "open_clip_torch-*.whl")
        bpe_gz = zipfile.ZipFile(wheel).read(MEMBER)
    _check(MEMBER, bpe_gz)
    files = build(bpe_gz)
    for name, data in files.items():
        _check(name, data)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        temp_file = args.out / f".{name}.tmp"
        temp_file.write_bytes(data)
        temp_file.replace(args.out / name)
        print(f"{args.out / name}: {len(data)} bytes, md5 {MD5[name]}")


if __name__ == "__main__":
    main()
