"""Property-based tests of every decoder and header parser: on any input, no exception escapes
except the documented poison types (PoisonMessage and its subclasses), and what does come out
keeps its invariants. `ontime bench fuzz` runs the same entry points coverage-guided."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.vision import png
from tests.unit.messages.record import Record
from workers.config.settings import load_settings
from workers.config.spec import STAGE_ORDER
from workers.errors import PoisonMessage
from workers.messages import codec
from workers.messages import headers as h
from workers.messages.deadline import stamp
from workers.messages.envelope import MAX_ID_CHARS, Envelope
from workers.messages.frames import load_decoder

# Each pipeline's own frame decoder, as its YAML names it.
DECODE_PCM = load_decoder(load_settings("acoustic").pipeline.frame)
DECODE_PNG = load_decoder(load_settings("vision").pipeline.frame)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = ["float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "complex64", "", "f4"]
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "1_000", "٣", " 5 ", "", "0x10"]),
    st.text(max_size=8),
)


@st.composite
def tensor_types(draw: st.DrawFn) -> str:
    dims = draw(st.lists(st.integers(-2, 50), max_size=10))
    shape = draw(st.one_of(st.just("x".join(map(str, dims))), st.text(max_size=20)))
    dtype = draw(st.one_of(st.sampled_from(DTYPES), st.text(max_size=10)))
    mime = draw(st.sampled_from([codec.TENSOR_MIME, "application/json", "APPLICATION/X-ONTIME-TENSOR", ""]))
    extra = draw(st.text(max_size=30))
    return f"{mime};dtype={dtype};shape={shape}{extra}"


@st.composite
def payloads(draw: st.DrawFn, sizes: tuple[int, ...] = ()) -> bytes | None:
    if draw(st.booleans()):
        return draw(st.one_of(st.none(), st.binary(max_size=512)))
    size = draw(st.sampled_from(sizes or (0, 4, 16, 68, 404)))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


@PROFILE
@given(payloads(), st.one_of(tensor_types(), st.text(max_size=300)))
def test_decode_tensor_raises_only_poison(payload: bytes | None, content_type: str) -> None:
    try:
        array = codec.decode_tensor(payload, content_type)
    except PoisonMessage:
        return
    assert array.nbytes == len(payload or b"")
    assert array.ndim <= 8


@PROFILE
@given(st.one_of(st.none(), st.text(max_size=400)))
def test_content_type_parse_raises_only_poison(text: str | None) -> None:
    try:
        ct = codec.ContentType.parse(text)
    except PoisonMessage:
        return
    assert "/" in ct.mime and len(ct.render()) <= len(text or "")


PCM_TYPES = st.one_of(
    st.builds(
        "audio/pcm;format={};rate={};channels={}".format,
        st.sampled_from(["s16le", "f32le", "s24le", ""]),
        st.sampled_from(["16000", "8000", ""]),
        st.sampled_from(["1", "2"]),
    ),
    st.text(max_size=80),
)


@PROFILE
@given(payloads(sizes=(32000, 64000, 31999, 0)), PCM_TYPES, st.booleans())
def test_decode_pcm_raises_only_poison(payload: bytes | None, content_type: str, nan: bool) -> None:
    if nan and payload is not None and len(payload) == 64000:
        floats = np.frombuffer(payload, "<f4").copy()
        floats[::97] = np.nan
        payload = floats.tobytes()
    try:
        samples = DECODE_PCM(payload, content_type)
    except PoisonMessage:
        return
    assert samples.shape == (16000,) and samples.dtype == np.float32
    assert np.isfinite(samples).all() and np.abs(samples).max(initial=0) <= 1.0


@st.composite
def stage_ms_headers(draw: st.DrawFn) -> str:
    pairs = draw(
        st.lists(
            st.tuples(st.one_of(st.sampled_from(STAGE_ORDER), st.text(max_size=6)), NUMBERS, NUMBERS),
            max_size=8,
        )
    )
    return ",".join(f"{s}={q}/{c}" for s, q, c in pairs) + draw(st.text(max_size=10))


@PROFILE
@given(st.one_of(st.none(), st.text(max_size=600), stage_ms_headers()))
def test_parse_stage_ms_never_raises_and_stays_bounded(text: str | None) -> None:
    times = h.parse_stage_ms(text)
    assert len(times) <= len(STAGE_ORDER)
    assert len({t.stage for t in times}) == len(times)
    for t in times:
        assert t.stage in STAGE_ORDER
        assert all(math.isfinite(x) and 0 <= x <= h.MAX_STAGE_MS for x in (t.queue_ms, t.compute_ms))
    assert len(h.render_stage_ms(times)) <= h.MAX_STAGE_MS_CHARS


@PROFILE
@given(
    st.one_of(st.none(), NUMBERS, st.text(max_size=30)),
    st.integers(-(2**63), 2**63),
    st.floats(0, 1e6),
    st.floats(0, 1e4),
    st.one_of(st.none(), st.floats(-1e15, 1e15)),
)
def test_stamp_never_raises_and_never_exceeds_the_ceiling(
    header: str | None, ts: int, budget: float, skew: float, now: float | None
) -> None:
    deadline = stamp(header, ts, budget, skew, now)
    base = float(ts) if now is None else min(float(ts), now + skew)
    assert deadline <= base + budget + skew + 1


NAMES = st.one_of(
    st.sampled_from([*h.READ, *h.INTERNAL, h.UNREADABLE, "x-note"]),
    st.text(max_size=12),
)
VALUES = st.one_of(
    st.none(),
    st.binary(max_size=64),
    NUMBERS.map(str.encode),
    st.sampled_from(
        [b"audio/pcm;format=s16le;rate=16000;channels=1", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"]
    ),
    st.text(max_size=20),
)
HEADERS = st.one_of(
    st.lists(st.tuples(NAMES, VALUES), max_size=12),
    st.sampled_from([SystemError("bad name"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x")]),
    st.none(),
)


@PROFILE
@given(HEADERS, st.integers(-5, 2**41), st.one_of(st.none(), st.binary(max_size=8)))
def test_envelope_from_any_record_never_raises(
    headers: list[tuple[str, bytes | str | None]] | BaseException | None, ts: int, key: bytes | None
) -> None:
    record = Record(headers, ts=ts, k=key)
    env = Envelope.from_record(record, budget_ms=250, skew_ms=50, taken_ms=1.7e12)
    assert 0 < len(env.id) <= MAX_ID_CHARS
    # What the stage writes for it (downstream or to the DLQ) is always encodable and small.
    out = env.error_headers("preprocess", "bad-header", "detail")
    assert sum(len(v) for _, v in out) < 4096
    env.distrust()
    assert env.internal_defect is None and env.status == "ok"


GOOD_PNGS = [
    png.encode(np.arange(28 * 28, dtype=np.uint32).reshape(28, 28).astype(np.uint8), f) for f in range(5)
]


@st.composite
def damaged_pngs(draw: st.DrawFn) -> bytes:
    """A valid camera PNG with bytes flipped, cut, inserted or the whole thing replaced."""
    data = bytearray(draw(st.sampled_from(GOOD_PNGS)))
    how = draw(st.sampled_from(["flip", "cut", "insert", "random"]))
    if how == "random":
        return draw(st.binary(max_size=2000))
    at = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        data[at] ^= draw(st.integers(1, 255))
    elif how == "cut":
        del data[at:]
    else:
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@PROFILE
@given(damaged_pngs(), st.sampled_from(["image/png", "image/png;x=1", "image/jpeg", "", "png"]))
def test_decode_png_raises_only_poison(payload: bytes, content_type: str) -> None:
    try:
        pixels = DECODE_PNG(payload, content_type)
    except PoisonMessage:
        return
    # Whatever got through is a whole 28×28 gray image (a flip may land in an ancillary byte).
    assert pixels.shape == (1, 28, 28) and pixels.dtype == np.uint8
