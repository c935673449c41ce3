"""Raw frames from devices: the decoder a pipeline names in its YAML, loaded once at start.

The runtime knows no frame format. `frame.decoder` in `pipelines/<name>/pipeline.yaml` names a
factory in the pipeline's own package (`pipelines.vision.frames:decoder`); called once with the
pipeline's `FrameSpec`, it checks its `params` (a bad one fails the worker at start, naming the
field) and returns the per-message function. That function is pure: payload and content-type
header in, one frame's input to the preprocess model out (no batch axis), or a PoisonMessage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from workers.config.spec import FrameSpec
from workers.errors import BadContentType, ConfigError
from workers.messages.codec import ContentType

FrameDecoder = Callable[[bytes | None, str], np.ndarray]
DecoderFactory = Callable[[FrameSpec], FrameDecoder]

__all__ = ["DecoderFactory", "FrameDecoder", "expect_mime", "load_decoder"]


def load_decoder(frame: FrameSpec) -> FrameDecoder:
    """The pipeline's frame decoder, built from `frame.decoder` (`module:factory`) and its params."""
    module_name, _, attr = frame.decoder.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"pipeline.frame.decoder {frame.decoder!r}: cannot import {module_name}: {exc}"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"pipeline.frame.decoder {frame.decoder!r}: {module_name} has no function {attr}")
    try:
        decode: FrameDecoder = factory(frame)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pipeline.frame.params: {exc} (decoder {frame.decoder})") from exc
    return decode


def expect_mime(content_type: str | None, frame: FrameSpec) -> ContentType:
    """The parsed header if its mime type is the one the pipeline accepts; else BadContentType."""
    got = ContentType.parse(content_type)
    want = ContentType.parse(frame.content_type)
    if got.mime != want.mime:
        raise BadContentType(f"expected {want.mime}, got {got.mime}")
    return got
