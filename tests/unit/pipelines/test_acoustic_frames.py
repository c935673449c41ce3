"""The acoustic frame decoder: 16 kHz mono PCM of exactly one second, nothing else."""

import numpy as np
import pytest

from workers.config.settings import load_settings
from workers.errors import BadContentType, BadSamples, BadShape, ConfigError
from workers.messages.frames import load_decoder

FRAME = load_settings("acoustic").pipeline.frame
DECODE = load_decoder(FRAME)
S16 = "audio/pcm;format=s16le;rate=16000;channels=1"
F32 = "audio/pcm;format=f32le;rate=16000;channels=1"


def test_s16le_frame_scales_to_unit_range() -> None:
    pcm = np.full(16000, -32768, dtype="<i2")
    samples = DECODE(pcm.tobytes(), S16)
    assert samples.dtype == np.float32
    assert samples.shape == (16000,)
    assert samples.min() == -1.0


def test_f32le_frame_is_accepted_when_finite() -> None:
    pcm = np.linspace(-1, 1, 16000, dtype="<f4")
    np.testing.assert_array_equal(DECODE(pcm.tobytes(), F32), pcm)


@pytest.mark.parametrize(
    ("payload", "content_type", "error"),
    [
        (b"", S16, BadShape),
        (b"\x01" * 31999, S16, BadShape),
        (b"\x01" * 32000, "audio/pcm;format=s16le;rate=8000;channels=1", BadContentType),
        (b"\x01" * 64000, "audio/pcm;format=s16le;rate=16000;channels=2", BadContentType),
        (b"\x01" * 32000, "image/jpeg", BadContentType),
        (b"\x01" * 32000, "audio/pcm;format=mulaw;rate=16000;channels=1", BadContentType),
        (np.full(16000, np.nan, dtype="<f4").tobytes(), F32, BadSamples),
        (np.full(16000, np.inf, dtype="<f4").tobytes(), F32, BadSamples),
        (np.full(16000, 3.0, dtype="<f4").tobytes(), F32, BadSamples),
    ],
)
def test_frames_that_do_not_match_are_poison(
    payload: bytes, content_type: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        DECODE(payload, content_type)


def test_samples_param_must_be_a_positive_integer() -> None:
    with pytest.raises(ConfigError, match="samples"):
        load_decoder(FRAME.model_copy(update={"params": {"samples": 0}}))
