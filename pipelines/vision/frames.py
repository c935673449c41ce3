"""Camera frames: an 8-bit gray PNG of exactly `width`×`height`, as uint8 pixels (1, H, W).

Named by `frame.decoder` in pipelines/vision/pipeline.yaml. A frame that is not what the pipeline
declares goes to `vision.dlq` with the reason: not a PNG, truncated or corrupt (CRC, zlib) →
`bad-encoding`; another size or more channels → `bad-shape`. Colour is refused unless the YAML
declares the conversion (`params.convert: gray`, ITU-R BT.601 luma, alpha dropped); images are
never resized. Scaling to the model's [0, 1] floats is the preprocess ONNX graph's job, so the
normalisation is versioned and checksummed with the models.
"""

from __future__ import annotations

import numpy as np

from pipelines.vision import png
from workers.config.spec import FrameSpec
from workers.errors import BadShape
from workers.messages.frames import FrameDecoder, expect_mime

# Luma weights of ITU-R BT.601, the usual RGB → gray for 8-bit cameras.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_CONVERSIONS = ("none", "gray")


def decoder(frame: FrameSpec) -> FrameDecoder:
    """The PNG decoder for `frame` (params: width, height, max_bytes, convert: none|gray)."""
    width, height = _positive(frame, "width"), _positive(frame, "height")
    max_bytes = _positive(frame, "max_bytes", 1 << 20)
    convert = frame.params.get("convert", "none")
    if convert not in _CONVERSIONS:
        raise ValueError(f"convert must be one of {', '.join(_CONVERSIONS)}, got {convert!r}")

    def decode(payload: bytes | None, content_type: str) -> np.ndarray:
        expect_mime(content_type, frame)
        data = payload or b""
        if len(data) > max_bytes:
            raise BadShape(f"frame has {len(data)} bytes; at most {max_bytes} accepted")
        header, chunks = png.read_header(data)
        if (header.width, header.height) != (width, height):
            raise BadShape(
                f"image is {header.width}×{header.height}; the pipeline takes {width}×{height} (no resizing)"
            )
        if header.colour_type != 0 and not (convert == "gray" and header.channels > 1):
            raise BadShape(
                f"image has {header.channels or '?'} channels ({header.colour}); the pipeline takes "
                "1 (8-bit gray)" + ("" if convert == "gray" else " and declares no colour conversion")
            )
        pixels = png.read_pixels(header, chunks)
        return _to_gray(pixels)[None, :, :]

    return decode


def _to_gray(pixels: png.Pixels) -> png.Pixels:
    """(H, W, C) → (H, W): gray as is, alpha dropped, RGB by luma."""
    channels = pixels.shape[2]
    if channels <= 2:
        return pixels[:, :, 0]
    luma: np.ndarray = pixels[:, :, :3].astype(np.float32) @ _LUMA
    gray: png.Pixels = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return gray


def _positive(frame: FrameSpec, key: str, default: int | None = None) -> int:
    value = frame.params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value
