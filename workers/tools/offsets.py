"""`ontime offsets show|reset`: where a stage's consumer group is, and moving it to replay.

A replay re-consumes a stage's input from an earlier point: stop the stage (the group must have
no members, or the broker refuses the change), reset, start it again. Without `--execute` a
reset only prints the plan, like `kafka-consumer-groups --reset-offsets --dry-run`.
Replayed frames keep their deadlines: those older than the budget go to P.late as `expired`
unless the stage runs with `late_policy: deliver` (docs/operations.md#replay).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from workers.config.settings import OntimeSettings
from workers.config.spec import STAGE_ORDER
from workers.errors import BrokerError, ConfigError


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    partition: int
    committed: int | None
    low: int
    high: int
    target: int | None = None

    @property
    def lag(self) -> int:
        return self.high - (self.committed if self.committed is not None else self.low)


def _clients(settings: OntimeSettings, group: str) -> tuple[AdminClient, Consumer]:
    conf: dict[str, str | int | float | bool] = {**settings.kafka.as_librdkafka_dict()}
    return AdminClient(conf), Consumer({**conf, "group.id": group, "enable.auto.commit": False})


def show(settings: OntimeSettings, stage: str) -> list[PartitionOffsets]:
    """Committed, low and high offsets of every partition of the stage's input topic."""
    p = settings.pipeline
    topic, group = p.input_topic(stage), p.group_id(stage)
    _admin, consumer = _clients(settings, group)
    try:
        parts = [TopicPartition(topic, i) for i in range(p.topics.partitions)]
        committed = consumer.committed(parts, timeout=10)
        out = []
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            out.append(PartitionOffsets(tp.partition, tp.offset if tp.offset >= 0 else None, low, high))
        return out
    finally:
        consumer.close()


def plan(
    settings: OntimeSettings,
    stage: str,
    *,
    to_time_ms: int | None = None,
    to_offset: int | None = None,
    shift_by: int | None = None,
    to: str | None = None,
    partitions: list[int] | None = None,
) -> list[PartitionOffsets]:
    """Target offset per partition; exactly one of the `to*` / `shift_by` choices."""
    chosen = [x for x in (to_time_ms, to_offset, shift_by, to) if x is not None]
    if len(chosen) != 1:
        raise ConfigError("offsets reset: give exactly one of --to-time, --to-offset, --shift-by, --to")
    current = [o for o in show(settings, stage) if partitions is None or o.partition in partitions]
    topic = settings.pipeline.input_topic(stage)
    by_time: dict[int, int] = {}
    if to_time_ms is not None:
        _admin, consumer = _clients(settings, settings.pipeline.group_id(stage))
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, o.partition, to_time_ms) for o in current], 10
            )
            by_time = {tp.partition: tp.offset for tp in found}
        finally:
            consumer.close()
    out = []
    for o in current:
        if to == "earliest":
            target = o.low
        elif to == "latest":
            target = o.high
        elif to_offset is not None:
            target = to_offset
        elif shift_by is not None:
            target = (o.committed if o.committed is not None else o.high) + shift_by
        else:
            found_at = by_time.get(o.partition, -1)
            target = found_at if found_at >= 0 else o.high  # nothing that recent: the end
        out.append(PartitionOffsets(o.partition, o.committed, o.low, o.high, min(max(target, o.low), o.high)))
    return out


def reset(settings: OntimeSettings, stage: str, targets: list[PartitionOffsets]) -> None:
    """Commit the targets for the stage's group; refused by the broker while the group has members."""
    p = settings.pipeline
    group, topic = p.group_id(stage), p.input_topic(stage)
    admin, consumer = _clients(settings, group)
    consumer.close()
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, o.partition, o.target) for o in targets if o.target is not None]
    )
    try:
        result = admin.alter_consumer_group_offsets([request])[group].result(timeout=30)
        refused = [tp.error for tp in result.topic_partitions or [] if tp.error is not None]
        if refused:
            raise BrokerError(str(refused[0]))
    except Exception as exc:
        raise BrokerError(
            f"offsets reset of group {group} refused: {exc}. Stop every {stage} worker first "
            "(the group must be empty); see docs/operations.md#replay"
        ) from None


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it carries an offset)."""
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def render(offsets: list[PartitionOffsets]) -> str:
    lines = [f"{'partition':>9} {'committed':>10} {'low':>8} {'high':>8} {'lag':>7} {'target':>8}"]
    for o in offsets:
        committed = "-" if o.committed is None else str(o.committed)
        target = "" if o.target is None else str(o.target)
        lines.append(f"{o.partition:>9} {committed:>10} {o.low:>8} {o.high:>8} {o.lag:>7} {target:>8}")
    return "\n".join(lines)


def register_cli(subparsers: Any) -> None:
    """`ontime offsets show|reset`."""
    parser = subparsers.add_parser("offsets", help="a stage group's offsets; reset them to replay")
    verbs = parser.add_subparsers(dest="offsets_verb", required=True, metavar="VERB")
    show_cmd = verbs.add_parser("show", help="committed offset and lag per partition of a stage")
    show_cmd.add_argument("--stage", required=True, choices=STAGE_ORDER)
    show_cmd.set_defaults(func=_cmd_show)
    reset_cmd = verbs.add_parser("reset", help="move a stopped stage's group (dry run without --execute)")
    reset_cmd.add_argument("--stage", required=True, choices=STAGE_ORDER)
    reset_cmd.add_argument("--to-time", default=None, help="ISO 8601 (UTC if no offset) or epoch ms")
    reset_cmd.add_argument(
        "--to-offset", type=int, default=None, help="this offset on every chosen partition"
    )
    reset_cmd.add_argument("--shift-by", type=int, default=None, help="relative to the committed offset")
    reset_cmd.add_argument("--to", choices=("earliest", "latest"), default=None)
    reset_cmd.add_argument("--partition", type=int, action="append", default=None, help="only these")
    reset_cmd.add_argument("--execute", action="store_true", help="apply (default: print the plan)")
    reset_cmd.set_defaults(func=_cmd_reset)


def _cmd_show(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    p = settings.pipeline
    print(f"group {p.group_id(args.stage)} on {p.input_topic(args.stage)}")
    print(render(show(settings, args.stage)))
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    targets = plan(
        settings,
        args.stage,
        to_time_ms=parse_time_ms(args.to_time) if args.to_time else None,
        to_offset=args.to_offset,
        shift_by=args.shift_by,
        to=args.to,
        partitions=args.partition,
    )
    p = settings.pipeline
    print(f"group {p.group_id(args.stage)} on {p.input_topic(args.stage)}")
    print(render(targets))
    if not args.execute:
        print("dry run: add --execute to apply (every worker of the stage must be stopped)")
        return 0
    reset(settings, args.stage, targets)
    print(f"reset {len(targets)} partitions of group {p.group_id(args.stage)}")
    return 0
