"""Image dimensions from the file header alone, so an image above `--max-pixels` is refused before any
decoder allocates for it (a 90 KB PNG can declare 20000 x 20000 pixels).

Reads PNG (IHDR), JPEG (the first SOFn marker), BMP (the DIB header), TIFF and BigTIFF (the first
IFD) and WebP (VP8, VP8L, VP8X). Every read is bounded by the bytes given; anything malformed raises
`HeaderError` and nothing else. Formats outside this list are not decoded at all.
"""

from __future__ import annotations

import struct

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WebP")
# JPEG start-of-frame markers: every SOFn but DHT (C4), JPG (C8) and DAC (CC), which share the range.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


class HeaderError(ValueError):
    """The header is not one of FORMATS, or is malformed; the message says which."""


def image_format(data: bytes) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) declared by the header; raises HeaderError."""
    kind = image_format(data)
    if kind is None:
        raise HeaderError(f"not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} file")
    try:
        width, height = _READERS[kind](data)
    except (struct.error, IndexError) as exc:
        raise HeaderError(f"{kind} header is truncated ({exc})") from None
    if width <= 0 or height <= 0:
        raise HeaderError(f"{kind} header declares {width}x{height} pixels")
    return width, height


def _png(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise HeaderError("PNG has no IHDR chunk first")
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _jpeg(data: bytes) -> tuple[int, int]:
    pos = 2
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 1 >= len(data) or data[pos] != 0xFF:
            raise HeaderError("JPEG ends before its frame header (SOF)")
        marker = data[pos + 1]
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            raise HeaderError("JPEG reaches its scan data before any frame header (SOF)")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise HeaderError(f"JPEG segment length {length} at byte {pos}")
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        pos += 2 + length


def _bmp(data: bytes) -> tuple[int, int]:
    (dib_size,) = struct.unpack_from("<I", data, 14)
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", data, 18)
        return width, height
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)  # a negative height means top-down rows


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    count_fmt, entry_size, value_at = ("Q", 20, 12) if big else ("H", 12, 8)
    (ifd,) = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)
    if ifd >= len(data):
        raise HeaderError(f"TIFF's first IFD at byte {ifd} is past the end of the file")
    (entries,) = struct.unpack_from(order + count_fmt, data, ifd)
    found: dict[int, int] = {}
    first = ifd + struct.calcsize(count_fmt)
    for index in range(min(entries, (len(data) - first) // entry_size)):
        at = first + index * entry_size
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or LONG8
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                raise HeaderError(f"TIFF tag {tag} has type {kind}")
            (found[tag],) = struct.unpack_from(order + fmt, data, at + value_at)
    if 256 not in found or 257 not in found:
        raise HeaderError("TIFF's first IFD has no ImageWidth / ImageLength")
    return found[256], found[257]


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise HeaderError("WebP VP8 frame has no start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise HeaderError("WebP VP8L has no signature byte")
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        if len(data) < 30:
            raise HeaderError("WebP VP8X header is truncated")
        return width, height
    raise HeaderError(f"WebP starts with an unknown chunk {chunk!r}")


_READERS = {"PNG": _png, "JPEG": _jpeg, "BMP": _bmp, "TIFF": _tiff, "WebP": _webp}
