"""The vision frame decoder: 28×28 8-bit gray PNG in, uint8 (1, 28, 28) out; anything else is poison."""

import numpy as np
import pytest

from pipelines.vision import png
from pipelines.vision.fashion_mnist import LABELS, camera_frames
from workers.config.settings import load_settings
from workers.errors import BadContentType, BadEncoding, BadShape, PoisonMessage
from workers.messages.frames import load_decoder

FRAME = load_settings("vision").pipeline.frame
DECODE = load_decoder(FRAME)
PIXELS = np.arange(28 * 28, dtype=np.uint32).reshape(28, 28).astype(np.uint8)


def test_gray_png_becomes_the_preprocess_input() -> None:
    out = DECODE(png.encode(PIXELS), "image/png")
    assert out.dtype == np.uint8 and out.shape == (1, 28, 28)
    np.testing.assert_array_equal(out[0], PIXELS)


@pytest.mark.parametrize(
    ("payload", "content_type", "error", "reason", "message"),
    [
        (png.encode(PIXELS)[:200], "image/png", BadEncoding, "bad-encoding", "truncated"),
        (b"\xff\xd8\xff\xe0 a JPEG", "image/png", BadEncoding, "bad-encoding", "not a PNG"),
        (None, "image/png", BadEncoding, "bad-encoding", "not a PNG"),
        (png.encode(np.zeros((32, 32), np.uint8)), "image/png", BadShape, "bad-shape", "32×32"),
        (png.encode(np.zeros((28, 28, 3), np.uint8)), "image/png", BadShape, "bad-shape", "3 channels"),
        (png.encode(np.zeros((28, 28, 2), np.uint8)), "image/png", BadShape, "bad-shape", "gray\\+alpha"),
        (png.encode(PIXELS), "image/jpeg", BadContentType, "bad-content-type", "expected image/png"),
        (png.encode(PIXELS) + bytes(70_000), "image/png", BadShape, "bad-shape", "at most 65536"),
    ],
)
def test_frames_that_do_not_match_go_to_the_dlq_with_a_reason(
    payload: bytes | None, content_type: str, error: type[PoisonMessage], reason: str, message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        DECODE(payload, content_type)
    assert caught.value.reason == reason


def test_size_is_refused_before_anything_is_inflated() -> None:
    # A header claiming 50 000 × 50 000 with no image data at all: the size check comes first.
    huge = png.encode(np.zeros((1, 1), np.uint8)).replace(
        b"\x00\x00\x00\x01\x00\x00\x00\x01", b"\x00\x00\xc3\x50\x00\x00\xc3\x50", 1
    )
    header = png.SIGNATURE + png._chunk(b"IHDR", huge[16:29]) + png._chunk(b"IEND", b"")
    with pytest.raises(BadShape, match="50000×50000"):
        DECODE(header, "image/png")


def test_declared_conversion_accepts_colour_by_luma() -> None:
    convert = load_decoder(FRAME.model_copy(update={"params": {**FRAME.params, "convert": "gray"}}))
    rgb = np.zeros((28, 28, 4), np.uint8)
    rgb[..., 0], rgb[..., 3] = 200, 255  # pure red, opaque
    out = convert(png.encode(rgb), "image/png")
    assert out.shape == (1, 28, 28) and int(out[0, 0, 0]) == round(0.299 * 200)
    np.testing.assert_array_equal(convert(png.encode(PIXELS), "image/png")[0], PIXELS)
    with pytest.raises(BadShape, match="32×32"):
        convert(png.encode(np.zeros((32, 32, 3), np.uint8)), "image/png")


def test_every_test_image_published_by_cameras_decodes_to_its_pixels() -> None:
    """The real inputs are needed: without `dataset-fashion-mnist` installed this fails."""
    frames = camera_frames()
    assert len(frames) == 10_000
    assert {f.label for f in frames} == set(LABELS)
    for frame in frames[:500]:
        np.testing.assert_array_equal(DECODE(frame.payload, "image/png")[0], frame.pixels)
