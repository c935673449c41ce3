"""The operator's side of a rollout: read the control topic, publish a plan, wait for the answers.

`ontime models rollout|rollback|canary|promote|abort` each turn the stage's current plan (the
newest `model/<stage>` record, or the pipeline YAML when there is none) into the next one,
publish it, and wait until every live replica of the stage (a fresh `latency/<stage>/…` report)
has acknowledged it. When a replica refuses, the previous plan is published again, so the
topic says what the replicas really serve.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from workers.config.settings import OntimeSettings
from workers.config.versions import with_version
from workers.deadlines.reserve import STALE_MS, LatencyReport
from workers.errors import ConfigError
from workers.loop.plans import ACK_PREFIX, PLAN_PREFIX, Ack, Plan, plan_key
from workers.messages.deadline import now_ms

READ_TIMEOUT_S = 10.0
IDLE_WAIT_S = 2.0


@dataclass(slots=True)
class ControlState:
    """What the control topic says right now: plans per stage, live replicas, their answers."""

    plans: dict[str, Plan] = field(default_factory=dict)
    reports: dict[tuple[str, str], LatencyReport] = field(default_factory=dict)
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)

    def take(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        name = key.decode(errors="replace")
        try:
            if name.startswith(PLAN_PREFIX):
                plan = Plan.decode(value)
                self.plans[plan.stage] = plan
            elif name.startswith(ACK_PREFIX):
                ack = Ack.decode(value)
                self.acks[(ack.stage, ack.replica)] = ack
            else:
                report = LatencyReport.decode(value)
                self.reports[(report.stage, report.replica)] = report
        except ValueError:
            pass  # nothing on this topic may stop us either

    def live(self, stage: str, now: float) -> set[str]:
        """Replicas of `stage` that reported their latency recently."""
        return {r for (s, r), rep in self.reports.items() if s == stage and now - rep.at_ms <= STALE_MS}


class ControlTopic:
    """A group-less reader of the control topic from its beginning, and a producer for plans."""

    def __init__(self, settings: OntimeSettings) -> None:
        self.settings = settings
        self.topic = settings.pipeline.topics.control
        conf = settings.kafka.as_librdkafka_dict()
        self.consumer = Consumer(
            {**conf, "group.id": "ontime-models-cli", "enable.auto.commit": False, "fetch.wait.max.ms": 50}
        )
        self.producer = Producer({**conf, "enable.idempotence": True, "acks": "all"})
        self.state = ControlState()

    def read_to_end(self) -> ControlState:
        try:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, 0), timeout=READ_TIMEOUT_S
            )
        except KafkaException as exc:
            raise ConfigError(f"cannot read the control topic {self.topic}: {exc}") from None
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        position, deadline = 0, time.monotonic() + READ_TIMEOUT_S
        while position < high and time.monotonic() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                position = int(msg.offset() or 0) + 1
                self.state.take(msg.key(), msg.value())
        return self.state

    def publish(self, plan: Plan) -> None:
        self.producer.produce(self.topic, key=plan_key(plan.stage), value=plan.encode())
        if self.producer.flush(READ_TIMEOUT_S):
            raise ConfigError(f"the plan was not acknowledged by the broker within {READ_TIMEOUT_S} s")

    def wait_acks(self, plan: Plan, replicas: set[str], expect: int, timeout_s: float) -> dict[str, Ack]:
        """Answers to `plan` until every replica in `replicas` (at least `expect`) answered, or timeout."""
        answers: dict[str, Ack] = {}
        need = max(expect, len(replicas))
        # Nobody live and nobody expected: a moment for a replica that is just starting, no more.
        deadline = time.monotonic() + (timeout_s if need else min(timeout_s, IDLE_WAIT_S))
        while time.monotonic() < deadline:
            if need and len(answers) >= need and replicas <= set(answers):
                break
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            self.state.take(msg.key(), msg.value())
            for (stage, replica), ack in self.state.acks.items():
                if stage == plan.stage and ack.rollout == plan.rollout:
                    answers[replica] = ack
        return answers

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(READ_TIMEOUT_S)


def current_plan(settings: OntimeSettings, state: ControlState, stage: str) -> Plan:
    """The stage's newest plan, or the one the pipeline YAML makes (serving its `model`)."""
    if stage not in settings.pipeline.stages:
        raise ConfigError(f"pipeline {settings.pipeline.name!r} has no stage {stage!r}")
    if stage in state.plans:
        return state.plans[stage]
    spec = settings.pipeline.stages[stage]
    return Plan(stage=stage, serving=spec.model, rollout="pipeline-yaml", at_ms=0)


def next_plan(current: Plan, action: str, version: str | None = None, share: float = 0.0) -> Plan:
    """The plan after `action` (rollout, rollback, canary, promote, abort) on `current`."""
    fresh: dict[str, Any] = {"rollout": uuid.uuid4().hex[:12], "at_ms": int(now_ms()), "by": action}
    if action == "rollout":
        assert version is not None
        target = with_version(current.serving, version)
        return replace(current, serving=target, previous=current.serving, candidate=None, share=0.0, **fresh)
    if action == "rollback":
        if current.previous is None:
            raise ConfigError(f"stage {current.stage}: no earlier version to roll back to")
        return replace(
            current, serving=current.previous, previous=current.serving, candidate=None, share=0.0, **fresh
        )
    if action == "canary":
        assert version is not None
        if not 0.0 < share <= 1.0:
            raise ConfigError(f"--share {share}: a canary serves a share in (0, 1]")
        return replace(current, candidate=with_version(current.serving, version), share=share, **fresh)
    if current.candidate is None:
        raise ConfigError(f"stage {current.stage}: no canary to {action}")
    if action == "promote":
        return replace(
            current, serving=current.candidate, previous=current.serving, candidate=None, share=0.0, **fresh
        )
    if action == "abort":
        return replace(current, candidate=None, share=0.0, **fresh)
    raise ValueError(f"unknown action {action}")


def revert_of(current: Plan, refused: Plan) -> Plan:
    """`current` again under a new id, published after replicas refused `refused`."""
    return replace(
        current, rollout=uuid.uuid4().hex[:12], at_ms=int(now_ms()), by=f"revert of {refused.rollout}"
    )
