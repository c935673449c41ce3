import numpy as np
import pytest

from workers.errors import BadContentType, BadShape
from workers.messages import codec


def test_tensor_round_trip_keeps_dtype_shape_and_values() -> None:
    array = np.arange(2 * 40 * 101, dtype=np.float32).reshape(2, 40, 101)
    payload, content_type = codec.encode_tensor(array)
    assert content_type == "application/x-ontime-tensor;dtype=float32;shape=2x40x101"
    back = codec.decode_tensor(payload, content_type)
    assert back.shape == (2, 40, 101)
    np.testing.assert_array_equal(back, array)


def test_decode_views_the_buffer_without_copying() -> None:
    payload = np.ones((1, 4), dtype=np.float32).tobytes()
    view = codec.decode_tensor(payload, "application/x-ontime-tensor;dtype=float32;shape=1x4")
    assert not view.flags.owndata
    assert not view.flags.writeable


def test_big_endian_input_is_sent_little_endian() -> None:
    array = np.array([[1.5, -2.0]], dtype=">f4")
    payload, content_type = codec.encode_tensor(array)
    assert payload == np.array([[1.5, -2.0]], dtype="<f4").tobytes()
    np.testing.assert_array_equal(codec.decode_tensor(payload, content_type), array)


@pytest.mark.parametrize(
    ("payload", "content_type", "error"),
    [
        (b"\x00" * 15, "application/x-ontime-tensor;dtype=float32;shape=1x4", BadShape),
        (b"", "application/x-ontime-tensor;dtype=float32;shape=1x4", BadShape),
        (b"\x00" * 16, "application/x-ontime-tensor;dtype=complex64;shape=1x4", BadContentType),
        (b"\x00" * 16, "application/x-ontime-tensor;dtype=float32;shape=1xfour", BadContentType),
        (b"\x00" * 16, "application/x-ontime-tensor;dtype=float32;shape=-1x4", BadContentType),
        (b"\x00" * 16, "application/json", BadContentType),
        (b"\x00" * 16, "", BadContentType),
        (b"\x00" * 16, "application/x-ontime-tensor;dtype", BadContentType),
    ],
)
def test_bad_tensors_are_poison(payload: bytes, content_type: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        codec.decode_tensor(payload, content_type)


def test_content_type_parses_parameters_case_insensitively() -> None:
    ct = codec.ContentType.parse("Audio/PCM; Format=s16le ;rate=16000;channels=1")
    assert ct.mime == "audio/pcm"
    assert ct.params == {"format": "s16le", "rate": "16000", "channels": "1"}
    assert codec.ContentType.parse(ct.render()) == ct
