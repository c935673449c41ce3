"""Outputs too large to produce become small dead-letter references, never a crash."""

from __future__ import annotations

from confluent_kafka import KafkaError

from workers.loop.deliveries import Ledger
from workers.loop.outputs import TOO_LARGE, Output, reference, refused
from workers.messages import headers as h
from workers.messages.deadline import Deadline
from workers.messages.envelope import Envelope, Source


def envelope() -> Envelope:
    return Envelope(
        id="frame-1",
        key=b"mic-1",
        payload=b"\x00" * 2_000_000,
        content_type="audio/pcm;format=s16le;rate=16000;channels=1",
        deadline=Deadline(1_000.0),
        captured_ms=None,
        taken_ms=0.0,
        source=Source("acoustic.raw", 3, 42, 0),
    )


def test_a_reference_carries_the_source_and_no_payload() -> None:
    env = envelope()
    big = Output("acoustic.dlq", b"k" * 5000, env.payload, env.headers(), env, "preprocess", "bad-samples")
    assert big.size() > 2_000_000
    ref = reference(big, "acoustic.dlq", "over the producer's limit")
    hd = dict(ref.headers)
    assert ref.value is None and ref.key is None  # a key this large is not kept either
    assert hd[h.ERROR_REASON] == b"bad-samples"  # the original reason survives
    assert (hd[h.SOURCE_TOPIC], hd[h.SOURCE_PARTITION], hd[h.SOURCE_OFFSET]) == (b"acoustic.raw", b"3", b"42")
    assert hd[h.ID] == b"frame-1" and ref.size() < 2_000
    emitted = Output("acoustic.features", b"mic-1", env.payload, env.headers(), env, "preprocess")
    assert dict(reference(emitted, "acoustic.dlq", "x").headers)[h.ERROR_REASON] == TOO_LARGE.encode()


def test_only_errors_about_the_record_itself_are_refusals() -> None:
    assert refused(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert refused(KafkaError(KafkaError.INVALID_RECORD))
    assert not refused(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert not refused(KafkaError(KafkaError._TRANSPORT))
    assert not refused(None)


class Msg:
    def topic(self) -> str:
        return "acoustic.features"


def test_the_ledger_releases_in_order_and_holds_a_batch_with_a_refusal() -> None:
    ledger = Ledger()
    first, second = ledger.open([]), ledger.open([])
    out = Output("t", None, b"x", [])
    reports = []
    for pending in (first, second):
        pending.waiting += 1
        reports.append(pending.report_for(out, may_refuse=True))
    reports[1](None, Msg())  # the later batch is acknowledged first
    assert ledger.ready(lambda p: None) == []  # … but may not overtake the earlier one
    reports[0](KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Msg())
    assert ledger.ready(lambda p: None) == []  # refused: waits for its dead-letter reference
    assert ledger.refused() == [(first, out)]
    assert [p is first for p in ledger.ready(lambda p: None)] == [True, False]
