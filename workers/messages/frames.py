"""Raw PCM frames from devices: checked against what the pipeline accepts, then viewed as float32.

The acoustic pipeline accepts 16 kHz mono, exactly `samples` long, as `s16le` (what microphones
send) or `f32le` (samples in [-1, 1]; NaN/Inf rejected). Anything else is a poison message.
"""

from __future__ import annotations

import numpy as np

from workers.config.spec import FrameSpec
from workers.errors import BadContentType, BadSamples, BadShape
from workers.messages.codec import ContentType

_FORMATS: dict[str, np.dtype[np.generic]] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


def decode_pcm(payload: bytes | None, content_type: str, spec: FrameSpec) -> np.ndarray:
    """float32 samples in [-1, 1] of one frame, shape (samples,); raises a PoisonMessage subclass."""
    ct = ContentType.parse(content_type)
    want = ContentType.parse(spec.content_type)
    if ct.mime != want.mime:
        raise BadContentType(f"expected {want.mime}, got {ct.mime}")
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
    expected = spec.samples * dtype.itemsize
    if size != expected:
        raise BadShape(f"frame has {size} bytes; {spec.samples} samples of {fmt} need {expected}")
    assert payload is not None
    samples = np.frombuffer(payload, dtype=dtype)
    if fmt == "s16le":
        return samples.astype(np.float32) * np.float32(1.0 / 32768.0)
    if not np.isfinite(samples).all():
        raise BadSamples(f"frame has {int((~np.isfinite(samples)).sum())} NaN/Inf samples")
    if np.abs(samples).max(initial=0.0) > 1.0:
        raise BadSamples("f32le samples must lie in [-1, 1]")
    return samples.astype(np.float32, copy=False)
