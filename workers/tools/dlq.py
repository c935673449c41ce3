"""`ontime dlq redrive`: send dead letters back to the topic they came from, once the cause is fixed.

A dead letter keeps the payload its stage received and names its source (`ontime-source-topic`).
Re-driving produces that payload, with its key and headers, back to that topic, minus the
`ontime-error-*` / `ontime-source-*` headers and with a fresh deadline (now + budget): a frame
that waited hours in the DLQ is judged by the fixed worker, not expired on arrival. Letters that
only reference their source (no payload: the output was too large to produce) are skipped and
counted; their source coordinates are in the headers.

Progress is the committed offsets of the consumer group `ontime.<P>.redrive` (or
`ontime.<P>.redrive.<reason>` with `--reason`), committed only after the re-driven records are
delivered: a second run continues where the first stopped, a crash redoes at most one batch.
A run stops at the end offsets it saw on starting, so letters that fail again are not looped.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from workers.config.settings import OntimeSettings
from workers.errors import BrokerError
from workers.messages import headers as h

_DROPPED = (
    h.ERROR_STAGE,
    h.ERROR_REASON,
    h.ERROR_DETAIL,
    h.SOURCE_TOPIC,
    h.SOURCE_PARTITION,
    h.SOURCE_OFFSET,
)


@dataclass
class RedriveReport:
    """What one run did, per source topic and per reason."""

    group: str
    read: int = 0
    redriven: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def render(self) -> str:
        lines = [f"group {self.group}: {self.read} dead letters read"]
        lines += [f"  re-driven to {topic}: {n}" for topic, n in sorted(self.redriven.items())]
        lines += [f"  skipped ({why}): {n}" for why, n in sorted(self.skipped.items())]
        return "\n".join(lines)


def group_id(settings: OntimeSettings, reason: str | None) -> str:
    base = f"ontime.{settings.pipeline.name}.redrive"
    return f"{base}.{reason}" if reason else base


def redrive(
    settings: OntimeSettings, *, reason: str | None = None, dry_run: bool = False, timeout_s: float = 60.0
) -> RedriveReport:
    """Re-drive the DLQ up to its current end; `reason` keeps only letters with that error reason."""
    p = settings.pipeline
    inputs = {p.topics.raw, p.topics.features, p.topics.scores}
    report = RedriveReport(group_id(settings, reason))
    kafka = settings.kafka.as_librdkafka_dict()
    consumer = Consumer(
        {**kafka, "group.id": report.group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )
    producer = Producer({**kafka, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    failures: list[str] = []
    try:
        ends = _end_offsets(consumer, p.topics.dlq, p.topics.partitions)
        start = consumer.committed([TopicPartition(p.topics.dlq, i) for i in ends], timeout=10)
        todo = {tp.partition: max(tp.offset, 0) for tp in start if max(tp.offset, 0) < ends[tp.partition]}
        if not todo:
            return report
        consumer.assign([TopicPartition(p.topics.dlq, i, off) for i, off in todo.items()])
        deadline = time.monotonic() + timeout_s
        done: dict[int, int] = {}
        while todo:
            if time.monotonic() > deadline:
                raise BrokerError(f"dlq redrive: {p.topics.dlq} not read to its end in {timeout_s:g} s")
            batch = consumer.consume(num_messages=500, timeout=0.5)
            for msg in batch:
                if msg.error() is not None:
                    continue
                part, off = msg.partition(), msg.offset()
                if part is None or off is None or part not in todo or off >= ends[part]:
                    continue  # letters dead-lettered after the start wait for the next run
                report.read += 1
                _one(msg, inputs, reason, dry_run, producer, report, failures, settings.pipeline.budget_ms)
                done[part] = off + 1
                if off + 1 >= ends[part]:
                    del todo[part]
            if dry_run or not done:
                continue
            if producer.flush(30) != 0 or failures:
                raise BrokerError(f"dlq redrive: delivery failed, nothing committed: {failures[:3]}")
            consumer.commit(
                offsets=[TopicPartition(p.topics.dlq, i, o) for i, o in done.items()], asynchronous=False
            )
            done.clear()
    finally:
        producer.flush(30)
        consumer.close()
    return report


def _one(
    msg: Message,
    inputs: set[str],
    reason: str | None,
    dry_run: bool,
    producer: Producer,
    report: RedriveReport,
    failures: list[str],
    budget_ms: float,
) -> None:
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    headers = h.as_dict(pairs)
    if reason is not None and headers.get(h.ERROR_REASON) != reason:
        report.skipped[f"reason {headers.get(h.ERROR_REASON)!r}"] += 1
        return
    target = headers.get(h.SOURCE_TOPIC, "")
    if target not in inputs:
        report.skipped[f"source topic {target!r} is no stage input"] += 1
        return
    if msg.value() is None:  # a reference letter (its record was too large to produce): nothing to send
        report.skipped[f"reference without payload ({headers.get(h.ERROR_REASON)})"] += 1
        return
    report.redriven[target] += 1
    if dry_run:
        return
    kept = [(k, v) for k, v in pairs if k not in _DROPPED and k != h.DEADLINE_MS]
    kept.append((h.DEADLINE_MS, str(int(time.time() * 1000 + budget_ms)).encode()))

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    producer.produce(target, value=msg.value(), key=msg.key(), headers=kept, on_delivery=delivered)
    producer.poll(0)


def _end_offsets(consumer: Consumer, topic: str, partitions: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in range(partitions):
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, i), timeout=10)
        out[i] = int(high)
    return out


def register_cli(subparsers: Any) -> None:
    """`ontime dlq redrive`."""
    parser = subparsers.add_parser("dlq", help="re-drive dead letters after a fix")
    verbs = parser.add_subparsers(dest="dlq_verb", required=True, metavar="VERB")
    cmd = verbs.add_parser("redrive", help="produce dead letters back to their source topic, fresh deadline")
    cmd.add_argument("--reason", default=None, help=f"only letters with this {h.ERROR_REASON}")
    cmd.add_argument("--dry-run", action="store_true", help="count what would be re-driven; commit nothing")
    cmd.add_argument("--timeout", type=float, default=60.0, help="seconds to read the DLQ to its end")
    cmd.set_defaults(func=_cmd_redrive)


def _cmd_redrive(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    report = redrive(settings, reason=args.reason, dry_run=args.dry_run, timeout_s=args.timeout)
    print(("dry run: " if args.dry_run else "") + report.render())
    if report.read == 0:
        print(
            f"nothing to re-drive in {settings.pipeline.topics.dlq} for group {report.group}", file=sys.stderr
        )
    return 0
