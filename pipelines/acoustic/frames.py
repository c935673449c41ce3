"""Microphone frames: 16 kHz mono PCM, exactly `samples` long, viewed as float32 in [-1, 1].

Accepted as `s16le` (what microphones send) or `f32le` (samples in [-1, 1]; NaN/Inf rejected);
rate and channels must be the pipeline's (no resampling or down-mixing is declared). Anything
else is a poison message. Named by `frame.decoder` in pipelines/acoustic/pipeline.yaml.
"""

from __future__ import annotations

import numpy as np

from workers.config.spec import FrameSpec
from workers.errors import BadContentType, BadSamples, BadShape
from workers.messages.codec import ContentType
from workers.messages.frames import FrameDecoder, expect_mime

_FORMATS: dict[str, np.dtype[np.generic]] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


def decoder(frame: FrameSpec) -> FrameDecoder:
    """The PCM decoder for `frame` (params: `samples`, a positive int)."""
    samples = frame.params.get("samples")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    want = ContentType.parse(frame.content_type)

    def decode(payload: bytes | None, content_type: str) -> np.ndarray:
        return decode_pcm(payload, content_type, want, samples, frame)

    return decode


def decode_pcm(
    payload: bytes | None, content_type: str, want: ContentType, samples: int, frame: FrameSpec
) -> np.ndarray:
    """float32 samples in [-1, 1] of one frame, shape (samples,); raises a PoisonMessage subclass."""
    ct = expect_mime(content_type, frame)
    fmt = ct.params.get("format", "")
    dtype = _FORMATS.get(fmt)
    if dtype is None:
        raise BadContentType(f"PCM format {fmt!r} not accepted; use one of {', '.join(_FORMATS)}")
    for key in ("rate", "channels"):
        if ct.params.get(key) != want.params.get(key):
            raise BadContentType(
                f"PCM {key}={ct.params.get(key)} not accepted; the pipeline takes {want.render()}"
            )
    size = 0 if payload is None else len(payload)
    expected = samples * dtype.itemsize
    if size != expected:
        raise BadShape(f"frame has {size} bytes; {samples} samples of {fmt} need {expected}")
    assert payload is not None
    pcm = np.frombuffer(payload, dtype=dtype)
    if fmt == "s16le":
        return pcm.astype(np.float32) * np.float32(1.0 / 32768.0)
    if not np.isfinite(pcm).all():
        raise BadSamples(f"frame has {int((~np.isfinite(pcm)).sum())} NaN/Inf samples")
    if np.abs(pcm).max(initial=0.0) > 1.0:
        raise BadSamples("f32le samples must lie in [-1, 1]")
    return pcm.astype(np.float32, copy=False)
