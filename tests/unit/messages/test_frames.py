"""The runtime's frame hook: it loads the decoder a pipeline names and knows no format itself."""

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines.vision import png
from workers.config.settings import load_settings
from workers.config.spec import FrameSpec
from workers.errors import BadContentType, BadShape, ConfigError
from workers.messages.frames import expect_mime, load_decoder


def test_decoder_reference_must_be_module_colon_function() -> None:
    with pytest.raises(ValidationError):
        FrameSpec(content_type="image/png", decoder="pipelines.vision.frames.decoder")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("pipelines.nowhere.frames:decoder", "cannot import"),
        ("pipelines.vision.frames:no_such_factory", "has no function"),
    ],
)
def test_unknown_decoder_fails_at_start_naming_the_field(ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_decoder(FrameSpec(content_type="image/png", decoder=ref))
    assert "pipeline.frame.decoder" in str(caught.value)


def test_bad_params_fail_at_start_naming_the_field() -> None:
    frame = FrameSpec(
        content_type="image/png", decoder="pipelines.vision.frames:decoder", params={"width": 28}
    )
    with pytest.raises(ConfigError, match=r"pipeline\.frame\.params: height"):
        load_decoder(frame)


def test_expect_mime_compares_only_the_type() -> None:
    frame = FrameSpec(content_type="image/png", decoder="pipelines.vision.frames:decoder")
    assert expect_mime("image/png;note=x", frame).params == {"note": "x"}
    with pytest.raises(BadContentType, match="expected image/png, got image/jpeg"):
        expect_mime("image/jpeg", frame)
    with pytest.raises(BadContentType, match="missing"):
        expect_mime(None, frame)


def test_params_overridden_from_text_keep_their_number_type() -> None:
    settings = load_settings(
        "vision", {"pipeline": {"frame": {"params": {"width": "32", "convert": "gray"}}}}
    )
    assert settings.pipeline.frame.params == {
        "width": 32,
        "height": 28,
        "max_bytes": 65536,
        "convert": "gray",
    }
    decode = load_decoder(settings.pipeline.frame)
    with pytest.raises(BadShape, match="the pipeline takes 32×28"):
        decode(png.encode(np.zeros((28, 28), np.uint8)), "image/png")
