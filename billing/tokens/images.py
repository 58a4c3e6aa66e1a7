"""Image prompt tokens by OpenAI's tile rule, sized from the header of a data URL without decoding it.

"low" detail is 85 tokens; "high" and "auto" count as high: fit in 2048x2048, shrink the short side to
768 (never enlarge), then 170 per 512px tile + 85. The size is read from the header of a base64 PNG,
JPEG, GIF or WebP data URL; otherwise (an http URL, another format) it is DEFAULT_IMAGE_TOKENS, a
1024x1024 high detail image. The mini models' 32px-patch rule is not modelled.
"""

from __future__ import annotations

import base64
import binascii
import struct

DEFAULT_IMAGE_TOKENS = 765


def image_tokens(width: int | None, height: int | None, detail: str) -> int:
    """Tokens of one image by OpenAI's tile rule; unknown dimensions count DEFAULT_IMAGE_TOKENS at high detail."""
    if detail == "low":
        return 85
    if width is None or height is None or width <= 0 or height <= 0:
        return DEFAULT_IMAGE_TOKENS
    # The tile count does not depend on orientation, so only the long and short sides matter.
    long_side, short_side = max(width, height), min(width, height)
    if long_side > 2048:
        long_side, short_side = 2048, max(1, short_side * 2048 // long_side)
    if short_side > 768:
        long_side, short_side = long_side * 768 // short_side, 768
    return 170 * -(-long_side // 512) * -(-short_side // 512) + 85


def image_dimensions(url: str) -> tuple[int, int] | None:
    """(width, height) from the header of a base64 PNG, JPEG, GIF or WebP data URL; None when unknown."""
    comma = url.find(",", 0, 256)  # slicing, not partitioning: copying a 20 MB URL would cost milliseconds
    if comma < 0 or not url.startswith("data:") or not url.endswith(";base64", 0, comma):
        return None
    payload = _Base64(url, comma + 1)
    try:
        head = payload.read(0, 30)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24]) if len(head) >= 24 else None
        if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
            return struct.unpack("<HH", head[6:10])
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_dimensions(head)
        if head[:2] == b"\xff\xd8":
            return _jpeg_dimensions(payload)
    except (binascii.Error, struct.error, ValueError):
        return None
    return None


class _Base64:
    """Base64 data from `offset` in `text`, read by byte range: only the 4-character groups holding it are decoded."""

    def __init__(self, text: str, offset: int) -> None:
        self.text, self.offset = text, offset

    def read(self, start: int, length: int) -> bytes:
        first, end = start // 3, -(-(start + length) // 3)
        decoded = base64.b64decode(self.text[self.offset + first * 4 : self.offset + end * 4], validate=True)
        return decoded[start - first * 3 : start - first * 3 + length]


def _webp_dimensions(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


# Start-of-frame markers carry the size; C4 (Huffman tables), C8 (reserved) and CC (arithmetic coding) do not.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_dimensions(payload: _Base64) -> tuple[int, int] | None:
    # Segments are hopped over by their length, so a large EXIF block costs one 4-byte read, not a decode.
    position = 2
    for _ in range(64):
        marker = payload.read(position, 9)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        if marker[1] == 0xFF:  # fill byte before a marker
            position += 1
        elif marker[1] in _JPEG_FRAME_MARKERS:
            if len(marker) < 9:
                return None
            height, width = struct.unpack(">HH", marker[5:9])
            return width, height
        elif 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01:
            position += 2
        elif marker[1] in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        else:
            position += 2 + int.from_bytes(marker[2:4], "big")
    return None
