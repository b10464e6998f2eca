"""Read and write text chunks in PNG files, so saved images carry the graph that made them.

Reading is for files from anyone: only the keywords asked for are decoded, compressed text is inflated at
most `TEXT_LIMIT` bytes (a 4 MB PNG can carry a 4 GiB comment), and a malformed chunk (broken zlib, a
cut-off body, bad UTF-8) is skipped as if absent, as is everything after a truncated chunk.

Pure Python (zlib + struct): no Pillow, no Qt, no torch.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection, Iterator

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_LIMIT = 32 * 2**20  # a graph or a workflow is kilobytes; nothing legitimate comes near this
TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt")


class TextTooLarge(ValueError):
    """A text chunk inflates to more than the limit."""


def _chunks(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            return  # truncated: nothing after it can be trusted
        yield offset, kind, body
        offset += 12 + length


def read_text(data: bytes, keys: Collection[str] | None = None, limit: int = TEXT_LIMIT) -> dict[str, str]:
    """The tEXt/zTXt/iTXt entries of a PNG whose keyword is in `keys` (all when None), keyword -> text.
    Malformed or oversized entries are left out; raises ValueError only when `data` is not a PNG."""
    texts: dict[str, str] = {}
    for _, kind, body in _chunks(data):
        if kind not in TEXT_KINDS:
            continue
        key, _, rest = body.partition(b"\0")
        name = key.decode("latin-1")
        if keys is not None and name not in keys:
            continue
        try:
            texts[name] = _decode(kind, rest, limit)
        except (ValueError, zlib.error, IndexError):
            continue
    return texts


def _decode(kind: bytes, rest: bytes, limit: int) -> str:
    if kind == b"tEXt":
        if len(rest) > limit:
            raise TextTooLarge("text chunk over the limit")
        return rest.decode("latin-1")
    if kind == b"zTXt":
        return _inflate(rest[1:], limit).decode("latin-1")
    compressed, rest = rest[0], rest[2:]
    _language, _, rest = rest.partition(b"\0")
    _translated, _, value = rest.partition(b"\0")
    value = _inflate(value, limit) if compressed else value
    if len(value) > limit:
        raise TextTooLarge("text chunk over the limit")
    return value.decode("utf-8")


def _inflate(data: bytes, limit: int) -> bytes:
    """zlib-inflate at most `limit` bytes; more, or a stream that does not end, is refused."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise TextTooLarge("compressed text inflates past the limit")
    if not inflater.eof:
        raise ValueError("cut-off compressed text")
    return out


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
