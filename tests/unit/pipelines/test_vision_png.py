"""The stdlib PNG reader: every row filter, an independent encoder's files, and bounded inflation."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipelines.vision import png
from workers.errors import BadEncoding

RNG = np.random.default_rng(7)


def decode(data: bytes) -> np.ndarray:
    header, chunks = png.read_header(data)
    return png.read_pixels(header, chunks)


@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_filter_round_trips(filter_type: int, channels: int) -> None:
    pixels = RNG.integers(0, 256, (9, 7, channels), dtype=np.uint8)
    np.testing.assert_array_equal(decode(png.encode(pixels, filter_type)), pixels)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_reads_what_pillow_writes(mode: str) -> None:
    """Pillow (libpng-style adaptive filters, its own zlib settings) is an independent encoder."""
    pixels = RNG.integers(0, 256, (28, 28, len(mode)), dtype=np.uint8)
    # A smooth ramp as well, so Pillow picks more than one filter type across rows.
    pixels[:14] = (np.arange(28, dtype=np.uint8)[None, :, None] * 9)[:, :, :]
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode).save(buffer, format="PNG")
    np.testing.assert_array_equal(decode(buffer.getvalue()), pixels)


def test_header_is_read_before_any_pixel() -> None:
    header, _ = png.read_header(png.encode(np.zeros((5, 3), np.uint8)))
    assert (header.width, header.height, header.bit_depth, header.channels) == (3, 5, 8, 1)


def _with_idat(width: int, height: int, idat: bytes, depth: int = 8, interlace: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, interlace)
    return png.SIGNATURE + png._chunk(b"IHDR", ihdr) + png._chunk(b"IDAT", idat) + png._chunk(b"IEND", b"")


def test_decompression_bomb_inflates_only_what_the_header_declares() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)  # 64 MiB of zeros in a few dozen KiB
    assert len(bomb) < 100_000
    with pytest.raises(BadEncoding, match="inflates to more"):
        decode(_with_idat(28, 28, bomb))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "signature"),
        (b"GIF89a" + bytes(100), "signature"),
        (png.encode(np.zeros((28, 28), np.uint8))[:-20], "truncated"),
        (png.SIGNATURE + b"\x00\x00", "truncated"),
        (_with_idat(28, 28, zlib.compress(bytes(28 * 29))[:-6]), "inflate"),
        (_with_idat(28, 28, b"not zlib at all"), "inflate"),
        (_with_idat(28, 28, zlib.compress(bytes(28 * 29 - 1))), "inflates to only"),
        (_with_idat(28, 28, zlib.compress(b"\x07" * (28 * 29))), "filter type 7"),
        (_with_idat(28, 28, zlib.compress(bytes(28 * 57)), depth=16), "16-bit"),
        (_with_idat(28, 28, zlib.compress(bytes(28 * 29)), interlace=1), "interlaced"),
    ],
)
def test_broken_pngs_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(BadEncoding, match=message):
        decode(data)


def test_a_flipped_bit_fails_the_crc() -> None:
    data = bytearray(png.encode(np.full((28, 28), 9, np.uint8)))
    data[len(png.SIGNATURE) + 8 + 3] ^= 0x01  # inside IHDR's body
    with pytest.raises(BadEncoding, match="CRC mismatch in chunk b'IHDR'"):
        decode(bytes(data))


def test_unknown_critical_chunk_is_refused() -> None:
    good = png.encode(np.zeros((2, 2), np.uint8))
    at = len(png.SIGNATURE) + 25  # after IHDR
    odd = good[:at] + png._chunk(b"ZZZZ", b"?") + good[at:]
    with pytest.raises(BadEncoding, match="unknown critical chunk"):
        decode(odd)
    ancillary = good[:at] + png._chunk(b"tEXt", b"Comment\x00camera 7") + good[at:]
    np.testing.assert_array_equal(decode(ancillary), np.zeros((2, 2, 1), np.uint8))
