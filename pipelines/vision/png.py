"""PNG read and write for camera frames, with the standard library only (zlib, struct) and numpy.

Reading is bounded: the caller checks the IHDR size before any pixel is inflated, and zlib never
inflates more than the declared image needs (plus one byte, to notice excess data), so a
decompression bomb costs a few bytes of work. Every chunk's CRC is checked. Supported: 8-bit,
non-interlaced gray, gray+alpha, RGB and RGBA, all five row filters; anything else is refused
with a reason (`BadEncoding`) rather than guessed at.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from workers.errors import BadEncoding

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Colour type → samples per pixel, and a name for error messages.
CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}
COLOUR_NAMES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}
_KNOWN_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}

Pixels = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Header:
    """The IHDR facts a decoder decides on before inflating anything."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return CHANNELS.get(self.colour_type, 0)

    @property
    def colour(self) -> str:
        return COLOUR_NAMES.get(self.colour_type, f"colour type {self.colour_type}")


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk up to IEND, CRCs checked; raises BadEncoding."""
    if not data.startswith(SIGNATURE):
        raise BadEncoding("not a PNG: the 8-byte PNG signature is missing")
    out: list[tuple[bytes, bytes]] = []
    pos = len(SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise BadEncoding(f"truncated PNG: ends at byte {len(data)} before the IEND chunk")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length + 4
        if end > len(data):
            raise BadEncoding(
                f"truncated PNG: chunk {kind!r} needs {length} bytes, only {len(data) - pos - 12} left"
            )
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise BadEncoding(f"corrupt PNG: CRC mismatch in chunk {kind!r} at byte {pos}")
        if kind[:1].isupper() and kind not in _KNOWN_CRITICAL:
            raise BadEncoding(f"PNG has an unknown critical chunk {kind!r}")
        out.append((kind, body))
        pos = end
        if kind == b"IEND":
            return out


def read_header(data: bytes) -> tuple[Header, list[tuple[bytes, bytes]]]:
    """The image header and the chunks; raises BadEncoding for anything that is not a sound PNG."""
    chunks = _chunks(data)
    kind, body = chunks[0]
    if kind != b"IHDR" or len(body) != 13:
        raise BadEncoding("corrupt PNG: the first chunk is not a 13-byte IHDR")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
    if width == 0 or height == 0 or compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise BadEncoding(f"corrupt PNG: invalid IHDR ({width}×{height}, method {compression}/{filtering})")
    return Header(width, height, depth, colour, interlace), chunks


def read_pixels(header: Header, chunks: list[tuple[bytes, bytes]]) -> Pixels:
    """Pixels (height, width, channels) uint8 of a PNG whose header the caller has accepted."""
    if header.bit_depth != 8 or header.channels == 0:
        raise BadEncoding(f"PNG {header.bit_depth}-bit {header.colour} is not supported; send 8-bit gray")
    if header.interlace:
        raise BadEncoding("interlaced (Adam7) PNG is not supported; send a non-interlaced image")
    stride = header.width * header.channels
    need = header.height * (stride + 1)
    inflater = zlib.decompressobj()
    raw = b""
    try:
        for kind, body in chunks:
            if kind == b"IDAT":
                raw += inflater.decompress(body, need + 1 - len(raw))
                if len(raw) > need:
                    break
    except zlib.error as exc:
        raise BadEncoding(f"corrupt PNG: image data does not inflate ({exc})") from None
    if len(raw) != need:
        how = "more" if len(raw) > need else "only"
        raise BadEncoding(f"corrupt PNG: image data inflates to {how} {len(raw)} bytes, {need} expected")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(header.height, stride + 1)
    return _unfilter(rows, header.channels).reshape(header.height, header.width, header.channels)


def _unfilter(rows: Pixels, bpp: int) -> Pixels:
    """Undo the per-row filters (None, Sub, Up, Average, Paeth) of PNG, in order."""
    out = np.zeros((rows.shape[0], rows.shape[1] - 1), dtype=np.uint8)
    prev = np.zeros(rows.shape[1] - 1, dtype=np.uint8)
    for y, row in enumerate(rows):
        kind, line = int(row[0]), row[1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:
            cur = (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint64) % 256).astype(np.uint8).ravel()
        elif kind == 2:
            cur = line + prev
        elif kind in (3, 4):
            cur = _unfilter_slow(kind, line, prev, bpp)
        else:
            raise BadEncoding(f"corrupt PNG: row {y} has filter type {kind}")
        out[y] = cur
        prev = out[y]
    return out


def _unfilter_slow(kind: int, line: Pixels, prev: Pixels, bpp: int) -> Pixels:
    """Average and Paeth depend on the byte just decoded, so they run byte by byte."""
    cur = bytearray(len(line))
    up = prev.tolist()
    for i, x in enumerate(line.tolist()):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            cur[i] = (x + (a + b) // 2) & 0xFF
            continue
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (x + predictor) & 0xFF
    return np.frombuffer(bytes(cur), dtype=np.uint8)


def encode(pixels: npt.ArrayLike, filter_type: int = 0) -> bytes:
    """An 8-bit PNG of `pixels`, (height, width) gray or (height, width, 1|2|3|4) channels.

    Cameras in the simulator send filter 0 (the smallest work); tests use the others to check
    the reader against every row filter.
    """
    array = np.asarray(pixels, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    colour = {c: t for t, c in CHANNELS.items()}[channels]
    rows = array.reshape(height, width * channels)
    if filter_type == 0:
        body = np.hstack([np.zeros((height, 1), dtype=np.uint8), rows]).tobytes()
    else:
        body = b"".join(
            bytes([filter_type]) + _filter(filter_type, rows[y], rows[y - 1] if y else None, channels)
            for y in range(height)
        )
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(body)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filter(kind: int, row: Pixels, prev: Pixels | None, bpp: int) -> bytes:
    line = row.astype(np.int64)
    up = np.zeros_like(line) if prev is None else prev.astype(np.int64)
    left = np.concatenate([np.zeros(bpp, dtype=np.int64), line[:-bpp]])
    upleft = np.concatenate([np.zeros(bpp, dtype=np.int64), up[:-bpp]])
    if kind == 0:
        pred = np.zeros_like(line)
    elif kind == 1:
        pred = left
    elif kind == 2:
        pred = up
    elif kind == 3:
        pred = (left + up) // 2
    elif kind == 4:
        p = left + up - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    else:
        raise ValueError(f"PNG filter type must be 0..4, not {kind}")
    return ((line - pred) % 256).astype(np.uint8).tobytes()
