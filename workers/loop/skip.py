"""Skip-ahead: under overload, seek past a partition's backlog head that can no longer make it.

Shedding a frame record by record still costs a fetch, a header parse and a produce to `P.late`
per frame; at 4× overload that alone eats the CPU the frames that still have time need. A frame's
deadline is at most its record timestamp + budget + allowed clock skew (workers/messages/
deadline.py clamps it there), so every record with a timestamp before

    horizon = now + need − budget − skew        (need: the stage's cheapest cost on an idle
                                                 machine + its reserve, Stage.hopeless_floor_ms)

is certainly hopeless, whatever its header says. Kafka finds the first offset at or after a
timestamp (`offsets_for_times`; every record before it is older), so the worker seeks there and
accounts the range it never read with one `P.late` record (reason `skipped`, header
`ontime-late-count` = frames, `ontime-source-offset` = the first skipped offset): the count is
exact, and `sent = results + late + dlq` still holds when late records are summed by their count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from workers.messages import headers as h
from workers.messages.reasons import SKIPPED

MIN_SKIP = 32  # a shorter hopeless run is cheaper to shed frame by frame than to look up
CHECK_EVERY_MS = 50.0  # per partition: offsets_for_times is a broker round trip


@dataclass(frozen=True, slots=True)
class Skip:
    """Offsets [first, end) of one partition that are accounted as late without being read."""

    topic: str
    partition: int
    first: int
    end: int
    horizon_ms: float

    @property
    def count(self) -> int:
        return self.end - self.first


def horizon_ms(now: float, budget_ms: float, skew_ms: float, need_ms: float) -> float:
    """Records with a timestamp before this cannot finish in time, whatever their deadline header."""
    return now + need_ms - budget_ms - skew_ms


def find_skip(
    consumer: Consumer,
    records: Sequence[Message],
    *,
    now: float,
    budget_ms: float,
    skew_ms: float,
    need_ms: float,
    checked: dict[tuple[str, int], float],
) -> list[Skip]:
    """The hopeless runs right after the records in hand, for partitions whose newest is hopeless."""
    horizon = horizon_ms(now, budget_ms, skew_ms, need_ms)
    newest: dict[tuple[str, int], tuple[int, int]] = {}
    for msg in records:
        tp = (str(msg.topic()), int(msg.partition() or 0))
        offset, ts = int(msg.offset() or 0), int(msg.timestamp()[1])
        if tp not in newest or offset > newest[tp][0]:
            newest[tp] = (offset, ts)
    skips: list[Skip] = []
    for (topic, partition), (offset, ts) in newest.items():
        if ts <= 0 or ts >= horizon or now - checked.get((topic, partition), 0.0) < CHECK_EVERY_MS:
            continue
        checked[(topic, partition)] = now
        end = _first_at_or_after(consumer, topic, partition, int(horizon))
        if end is not None and end - (offset + 1) >= MIN_SKIP:
            skips.append(Skip(topic, partition, offset + 1, end, horizon))
    return skips


def _first_at_or_after(consumer: Consumer, topic: str, partition: int, ts_ms: int) -> int | None:
    """The first offset with a timestamp ≥ ts_ms; the end of the log when there is none."""
    try:
        (found,) = consumer.offsets_for_times([TopicPartition(topic, partition, ts_ms)], timeout=1.0)
        if found.error is None and found.offset >= 0:
            return int(found.offset)
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=1.0, cached=False)
    except KafkaException:
        return None  # the broker did not answer: shed record by record this time
    return int(high) if high >= 0 else None


def skip_headers(skip: Skip, stage: str) -> h.HeaderList:
    """Headers of the one `P.late` record that stands for a skipped range."""
    detail = (
        f"{skip.count} frames at offsets {skip.first}..{skip.end - 1} were older than "
        f"{skip.horizon_ms:.0f} (epoch ms) when {stage} reached them; not read"
    )
    return [
        (h.ERROR_STAGE, stage.encode()),
        (h.ERROR_REASON, SKIPPED.encode()),
        (h.ERROR_DETAIL, detail.encode()),
        (h.SOURCE_TOPIC, skip.topic.encode()),
        (h.SOURCE_PARTITION, str(skip.partition).encode()),
        (h.SOURCE_OFFSET, str(skip.first).encode()),
        (h.LATE_COUNT, str(skip.count).encode()),
    ]
