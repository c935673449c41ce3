"""Content types and the zero-copy tensor payload that stages hand each other.

A tensor travels as raw little-endian array bytes; dtype and shape live in the content type
(`application/x-ontime-tensor;dtype=float32;shape=1x40x101`). Sizes are checked against the
shape *before* an array is made, and decoding never copies: the array views the Kafka buffer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from workers.errors import BadContentType, BadShape
from workers.messages import headers as h

TENSOR_MIME = "application/x-ontime-tensor"
JSON_MIME = "application/json"
MAX_CHARS = 256  # a content type longer than this is not one

_DTYPES: dict[str, np.dtype[np.generic]] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8")
}


_WIRE: dict[np.dtype[np.generic], np.dtype[np.generic]] = {d: d for d in _DTYPES.values()}


@dataclass(frozen=True, slots=True)
class ContentType:
    """A parsed `type/subtype;key=value;...` header; parameter keys are lower-cased."""

    mime: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> ContentType:
        """Parse once per distinct text: a stream repeats a handful of content types."""
        return _parse_cached(text)

    @classmethod
    def _parse(cls, text: str | None) -> ContentType:
        if not text or not text.strip():
            raise BadContentType(f"missing {h.CONTENT_TYPE} header")
        if len(text) > MAX_CHARS:
            raise BadContentType(f"content type is {len(text)} characters long; at most {MAX_CHARS}")
        mime, *rest = (p.strip() for p in text.split(";"))
        params: dict[str, str] = {}
        for item in rest:
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise BadContentType(f"content type parameter {item!r} is not key=value in {text!r}")
            params[key.strip().lower()] = value.strip()
        if "/" not in mime:
            raise BadContentType(f"content type {text!r} is not type/subtype")
        return cls(mime.lower(), params)

    def render(self) -> str:
        return ";".join([self.mime, *(f"{k}={v}" for k, v in self.params.items())])


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str | None) -> ContentType:
    # lru_cache does not keep exceptions: a bad content type is parsed (and refused) every time.
    # The result is shared; ContentType is frozen and its params are never mutated.
    return ContentType._parse(text)


@functools.lru_cache(maxsize=256)
def tensor_content_type(dtype: np.dtype[np.generic], shape: tuple[int, ...]) -> str:
    return f"{TENSOR_MIME};dtype={dtype.name};shape={'x'.join(str(d) for d in shape)}"


def encode_tensor(array: np.ndarray) -> tuple[bytes, str]:
    """Bytes and content type of `array` (converted to little-endian C order only if it is not)."""
    wire_dtype = _WIRE.get(array.dtype)  # by dtype object: `dtype.name` is slow, once per frame
    if wire_dtype is None:
        if array.dtype.name not in _DTYPES:
            raise ValueError(f"dtype {array.dtype} cannot travel as a tensor payload")
        wire_dtype = _DTYPES[array.dtype.name]
    wire = np.ascontiguousarray(array, dtype=wire_dtype)
    return wire.tobytes(), tensor_content_type(array.dtype, tuple(array.shape))


def decode_tensor(payload: bytes | memoryview | None, content_type: str | ContentType) -> np.ndarray:
    """View `payload` as the declared tensor; raises BadContentType / BadShape, never copies."""
    ct = content_type if isinstance(content_type, ContentType) else ContentType.parse(content_type)
    if ct.mime != TENSOR_MIME:
        raise BadContentType(f"expected {TENSOR_MIME}, got {ct.mime}")
    dtype = _DTYPES.get(ct.params.get("dtype", ""))
    if dtype is None:
        raise BadContentType(f"unsupported tensor dtype {ct.params.get('dtype')!r}")
    shape = parse_shape(ct.params.get("shape", ""))
    expected = math.prod(shape) * dtype.itemsize
    size = 0 if payload is None else len(payload)
    if size != expected:
        raise BadShape(f"payload has {size} bytes, shape {shape} of {dtype.name} needs {expected}")
    if payload is None or expected == 0:
        return np.zeros(shape, dtype=dtype)
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


@functools.lru_cache(maxsize=256)
def parse_shape(text: str) -> tuple[int, ...]:
    """`1x40x101` → (1, 40, 101); cached, since a stream repeats a few shapes (errors are not)."""
    try:
        dims = tuple(int(d) for d in text.split("x"))
    except ValueError:
        raise BadContentType(f"tensor shape {text!r} is not like 1x40x101") from None
    if not dims or any(d < 0 for d in dims) or len(dims) > 8:
        raise BadContentType(f"tensor shape {text!r} is not like 1x40x101")
    return dims
