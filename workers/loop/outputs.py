"""The Kafka records a batch produces, built before anything is sent, so none can take the loop down.

Every outcome becomes one `Output` (emit → next topic, late → P.late, dlq → P.dlq), and every
skipped range one more late record. An output too large for the producer (`message.max.bytes`)
would raise MSG_SIZE_TOO_LARGE and crash-loop the worker on the same input forever, and a device
controls the size of the payload and of its headers: such an output is replaced, *before* it is
produced, by a dead letter that references its source record instead of copying it. The same
replacement answers a record the broker refuses for its size or form at delivery time.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError

from workers.messages import headers as h
from workers.messages.envelope import Envelope
from workers.messages.reasons import TOO_LARGE

# Per-record refusals: retrying the same bytes can never succeed, so the record is dead-lettered.
REFUSED_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
    }
)
RECORD_OVERHEAD = 512  # record and batch framing librdkafka adds around key, value and headers
MAX_KEY_IN_REFERENCE = 1024
MAX_DETAIL = 1000


@dataclass(slots=True)
class Output:
    """One record to produce, with what it stands for (for a reference if it cannot be sent)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: h.HeaderList
    envelope: Envelope | None = None
    stage: str = ""
    reason: str = ""  # the dead-letter reason when the output is itself a dead letter

    def size(self) -> int:
        headers = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.key or b"") + len(self.value or b"") + headers + RECORD_OVERHEAD


def refused(err: KafkaError | None) -> bool:
    """A delivery error that is about this record's bytes, not about the broker's health."""
    return err is not None and err.code() in REFUSED_CODES


def reference(output: Output, dlq_topic: str, why: str) -> Output:
    """A small dead letter in place of `output`: no payload, source coordinates, the reason."""
    env = output.envelope
    src = env.source if env is not None else None
    reason = output.reason or TOO_LARGE
    detail = f"{why}; the record of {output.size()} bytes for {output.topic} was not produced"
    headers: h.HeaderList = []
    if env is not None:
        headers += [(h.ID, env.id.encode()[:256]), (h.DEADLINE_MS, str(int(env.deadline.at_ms)).encode())]
    headers += [
        (h.ERROR_STAGE, output.stage.encode()),
        (h.ERROR_REASON, reason.encode()),
        (h.ERROR_DETAIL, detail[:MAX_DETAIL].encode()),
        (h.SOURCE_TOPIC, (src.topic if src else "").encode()),
        (h.SOURCE_PARTITION, str(src.partition if src else -1).encode()),
        (h.SOURCE_OFFSET, str(src.offset if src else -1).encode()),
    ]
    key = output.key if output.key is not None and len(output.key) <= MAX_KEY_IN_REFERENCE else None
    return Output(dlq_topic, key, None, headers, env, output.stage, reason)
