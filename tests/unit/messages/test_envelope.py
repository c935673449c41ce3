"""Envelope.from_record on hostile headers: never raises; what it cannot trust becomes a defect."""

from __future__ import annotations

import pytest

from tests.unit.messages.record import Record
from workers.errors import BadContentType, BadHeader
from workers.messages import headers as h
from workers.messages.envelope import Envelope, Source, derived_id

NOW = 1_700_000_000_100.0
PCM = b"audio/pcm;format=s16le;rate=16000;channels=1"


def envelope(record: Record) -> Envelope:
    return Envelope.from_record(record, budget_ms=250, skew_ms=50, taken_ms=NOW)


def test_a_frame_without_id_gets_the_same_id_every_time_it_is_read() -> None:
    first = envelope(Record([(h.CONTENT_TYPE, PCM)], off=42))
    again = envelope(Record([(h.CONTENT_TYPE, PCM)], off=42))
    other = envelope(Record([(h.CONTENT_TYPE, PCM)], off=43))
    assert first.id == again.id == derived_id(Source("p.raw", 0, 42, 0))
    assert other.id != first.id
    assert envelope(Record([(h.ID, b"dev-given")])).id == "dev-given"


def test_header_names_that_are_not_utf8_become_a_defect_and_a_marker() -> None:
    record = Record(SystemError("returned a result with an exception set"))
    env = envelope(record)
    assert isinstance(env.defect, BadHeader) and "not UTF-8" in env.defect.detail
    assert env.id == derived_id(Source("p.raw", 0, 7, 0))
    # Every later reader of the same message sees the marker, never the broken list.
    assert record.headers() == [(h.UNREADABLE, env.defect.detail.encode())]
    assert isinstance(envelope(record).defect, BadHeader)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([(h.ID, b"\xff")], "bad-header"),
        ([(h.ID, b"x" * 129)], "bad-header"),
        ([(h.ID, b"a\nb")], "bad-header"),
        ([(h.DEADLINE_MS, b"nan")], "bad-header"),
        ([(h.DEADLINE_MS, b"-1")], "bad-header"),
        ([(h.DEADLINE_MS, b"0")], "bad-header"),
        ([(h.DEADLINE_MS, b"1" * 20)], "bad-header"),
        ([(h.CONTENT_TYPE, b"x/y;" + b"a" * 300)], "bad-content-type"),
        ([(h.CAPTURED_MS, b"\xc3")], "bad-header"),
    ],
)
def test_headers_the_pipeline_acts_on_must_be_valid(headers: list[tuple[str, bytes]], reason: str) -> None:
    env = envelope(Record([(h.CONTENT_TYPE, PCM), *headers]))
    assert env.defect is not None and env.defect.reason == reason
    assert len(env.id) <= 128 and len(env.content_type) <= 256


def test_the_last_of_a_repeated_header_wins() -> None:
    env = envelope(
        Record([(h.ID, b"first"), (h.CONTENT_TYPE, b"image/png"), (h.ID, b"last"), (h.CONTENT_TYPE, PCM)])
    )
    assert (env.id, env.content_type, env.defect) == ("last", PCM.decode(), None)


def test_informational_headers_that_are_malformed_are_dropped() -> None:
    env = envelope(
        Record(
            [
                (h.CAPTURED_MS, b"nan"),
                (h.TRACEPARENT, b"00-zz"),
                (h.STAGE_MS, b"preprocess=nan/1"),
                ("x", b"\xff"),
            ]
        )
    )
    assert (env.captured_ms, env.trace, env.stage_times, env.defect) == (None, {}, [], None)


def test_internal_headers_are_remembered_and_dropped_on_distrust() -> None:
    model = b"m:1:" + b"a" * 64
    env = envelope(
        Record(
            [(h.STATUS, b"degraded"), (h.MODEL, model), (h.STAGE_MS, b"infer=1/1"), (h.ERROR_REASON, b"x")]
        )
    )
    assert (env.status, env.model) == ("degraded", model.decode())
    assert env.distrust() == (h.STATUS, h.MODEL, h.STAGE_MS, h.ERROR_REASON)
    assert (env.status, env.model, env.stage_times, env.internal) == ("ok", None, [], ())


def test_malformed_internal_headers_are_poison_only_where_trusted() -> None:
    env = envelope(Record([(h.STATUS, b"pwned"), (h.MODEL, b"x")]))
    assert isinstance(env.internal_defect, BadHeader) and env.defect is None
    env.distrust()
    assert env.internal_defect is None


def test_content_type_defect_keeps_the_dlq_headers_small() -> None:
    env = envelope(Record([(h.CONTENT_TYPE, b"a/b;" + b"x=y;" * 10_000)]))
    assert isinstance(env.defect, BadContentType)
    assert sum(len(v) for _, v in env.error_headers("preprocess", "bad-content-type", "d" * 5000)) < 2000


def test_every_served_model_identity_is_a_valid_model_header() -> None:
    from workers.config.settings import load_settings
    from workers.stages.model import load_verified

    for name, stage in load_settings("acoustic").pipeline.stages.items():
        for ref in filter(None, (stage.model, stage.fallback)):
            card, _ = load_verified(ref)
            identity = f"{card.name}:{card.version}:{card.sha256}"
            env = envelope(Record([(h.MODEL, identity.encode())]))
            assert env.internal_defect is None and env.model == identity, (name, ref)


def test_forward_keeps_every_field_but_payload_content_type_and_timings() -> None:
    """`forward` builds the next envelope field by field: a field added later must be carried too."""
    from dataclasses import fields

    from workers.errors import BadShape
    from workers.messages.deadline import Deadline

    env = Envelope(
        id="f-1",
        key=b"mic-1",
        payload=b"x",
        content_type="a/b",
        deadline=Deadline(1_700_000_000_250),
        captured_ms=1_700_000_000_000,
        taken_ms=1_700_000_000_010.0,
        stage_times=[h.StageTime("preprocess", 1.0, 2.0)],
        trace={h.TRACEPARENT: "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
        model="m:1:" + "0" * 64,
        status="degraded",
        source=Source("t", 1, 2, 3),
        defect=BadHeader("d"),
        internal=(h.STAGE_MS,),
        internal_defect=BadShape("s"),
    )
    nxt = env.forward(b"y", "c/d", h.StageTime("infer", 0.5, 0.5), status="late")
    changed = {"payload", "content_type", "stage_times", "status"}
    for f in fields(Envelope):
        if f.name not in changed:
            assert getattr(nxt, f.name) == getattr(env, f.name), f.name
    assert (nxt.payload, nxt.content_type, nxt.status) == (b"y", "c/d", "late")
    assert [t.stage for t in nxt.stage_times] == ["preprocess", "infer"]
    assert [t.stage for t in env.stage_times] == ["preprocess"]  # the original is untouched
