"""Read and write text chunks in PNG files, so saved images carry the graph that made them.

Pure Python (zlib + struct): no Pillow, no Qt, no torch.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes):
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            raise ValueError("truncated PNG chunk")
        yield offset, kind, body
        offset += 12 + length


def read_text(data: bytes) -> dict[str, str]:
    """All tEXt/zTXt/iTXt entries of a PNG, keyword -> text."""
    texts: dict[str, str] = {}
    for _, kind, body in _chunks(data):
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            texts[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\0")
            _translated, _, value = rest.partition(b"\0")
            if compressed:
                value = zlib.decompress(value)
            texts[key.decode("latin-1")] = value.decode("utf-8")
    return texts


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def add_text(data: bytes, texts: dict[str, str]) -> bytes:
    """A copy of PNG `data` with compressed UTF-8 iTXt chunks for `texts`, inserted before IEND."""
    end = next(offset for offset, kind, _ in _chunks(data) if kind == b"IEND")
    extra = b"".join(
        _chunk(b"iTXt", key.encode("latin-1") + b"\0\x01\0\0\0" + zlib.compress(value.encode("utf-8")))
        for key, value in texts.items()
    )
    return data[:end] + extra + data[end:]
