"""Rebuild the shipped T5 tokenizer (assets/tokenizers/t5), which SD3's and Flux's T5-XXL encoder reads.

No PyPI wheel ships T5's `spiece.model`, but the `stable-diffusion-cpp-python` sdist (MIT) embeds the
`tokenizer.json` of T5 v1.1 as a C byte array (`t5_tokenizer_json_str` in
vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp). This script downloads that sdist with
`pip download --no-deps` (never installing it), pulls the array out, checks its md5, and writes it in the
form FLUX.1's `tokenizer_2/tokenizer.json` has: the same Unigram vocabulary (32 100 pieces, every score)
and Precompiled normaliser, with the normaliser's right strip, the Metaspace pre-tokenizer and decoder
serialised as tokenizers 0.19+ does (prepend_scheme "first", T5TokenizerFast with legacy=false). The ids
equal those of the FLUX.1-dev and SD3 hub tokenizers for every prompt without literal special tokens.

    python -m tools.build_t5_tokenizer [--sdist SDIST] [--out assets/tokenizers/t5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path

from tools.build_clip_tokenizer import download

OUT = Path(__file__).resolve().parents[1] / "assets" / "tokenizers" / "t5"
SDIST = "stable-diffusion-cpp-python==0.4.7"
MEMBER = "vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp"
ARRAY = "t5_tokenizer_json_str"
MD5 = {
    ARRAY: "1e3606977b8711c3a60763aeaee39d65",
    "tokenizer.json": "aaf06dc2e997f7672955bfe2ef444605",
}
CONFIG = {
    "tokenizer_class": "T5Tokenizer",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "extra_ids": 100,
    "legacy": False,
    "model_max_length": 512,
}


def c_array(source: str, name: str) -> bytes:
    """The bytes of `static const unsigned char NAME[] = {0x.., ...};` in a C header."""
    start = source.index(f"{name}[]")
    body = source[source.index("{", start) + 1 : source.index("}", start)]
    return bytes(int(value, 16) for value in re.findall(r"0x[0-9a-fA-F]{1,2}", body))


def modernise(data: bytes) -> bytes:
    """FLUX.1's serialisation of the same tokenizer (see the module docstring)."""
    tokenizer = json.loads(data)
    precompiled = tokenizer["normalizer"]["normalizers"][0]
    tokenizer["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            precompiled,
            {"type": "Strip", "strip_left": False, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"},
        ],
    }
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    tokenizer["pre_tokenizer"] = {**metaspace, "prepend_scheme": "first"}
    tokenizer["decoder"] = {**metaspace, "prepend_scheme": "always"}
    tokenizer["model"]["byte_fallback"] = False
    return (json.dumps(tokenizer, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _check(name: str, data: bytes) -> None:
    digest = hashlib.md5(data).hexdigest()
    if digest != MD5[name]:
        sys.exit(f"{name}: md5 {digest}, expected {MD5[name]}; nothing written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="a downloaded sdist (default: download it)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        sdist = args.sdist or download(SDIST, Path(temp), "stable_diffusion_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith(MEMBER))
            header = archive.extractfile(member).read().decode("utf-8")
    raw = c_array(header, ARRAY)
    _check(ARRAY, raw)
    files = {
        "tokenizer.json": modernise(raw),
        "tokenizer_config.json": (json.dumps(CONFIG, indent=2) + "\n").encode("utf-8"),
    }
    _check("tokenizer.json", files["tokenizer.json"])
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        temp_file = args.out / f".{name}.tmp"
        temp_file.write_bytes(data)
        temp_file.replace(args.out / name)
        print(f"{args.out / name}: {len(data)} bytes, md5 {hashlib.md5(data).hexdigest()}")


if __name__ == "__main__":
    main()
