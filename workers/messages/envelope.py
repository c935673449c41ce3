"""`Envelope`: one message as a stage sees it — ids, deadline, timings — independent of Kafka."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from workers.messages import headers as h
from workers.messages.deadline import Deadline, stamp


@dataclass(frozen=True, slots=True)
class Source:
    """Where a consumed record came from, for error records and offset commits."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(slots=True)
class Envelope:
    """A frame on its way through the pipeline; headers are parsed once, on the way in."""

    id: str
    key: bytes | None
    payload: bytes | None
    content_type: str
    deadline: Deadline
    captured_ms: int | None
    taken_ms: float
    stage_times: list[h.StageTime] = field(default_factory=list)
    trace: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    status: str = "ok"
    source: Source | None = None

    @classmethod
    def from_record(
        cls, msg: Any, *, budget_ms: float, skew_ms: float, taken_ms: float, content_type: str | None = None
    ) -> Envelope:
        """Build from a confluent_kafka.Message; a missing id or deadline is stamped here."""
        hd = h.as_dict(msg.headers())
        _, ts = msg.timestamp()
        ts = int(ts) if ts and ts > 0 else int(taken_ms)
        captured = hd.get(h.CAPTURED_MS)
        return cls(
            id=hd.get(h.ID) or str(uuid.uuid4()),
            key=msg.key(),
            payload=msg.value(),
            content_type=hd.get(h.CONTENT_TYPE, content_type or ""),
            deadline=Deadline(stamp(hd.get(h.DEADLINE_MS), ts, budget_ms, skew_ms, now=taken_ms)),
            captured_ms=int(captured) if captured and captured.isdigit() else None,
            taken_ms=taken_ms,
            stage_times=h.parse_stage_ms(hd.get(h.STAGE_MS)),
            trace={k: hd[k] for k in (h.TRACEPARENT, h.TRACESTATE) if k in hd},
            model=hd.get(h.MODEL),
            status=hd.get(h.STATUS, "ok"),
            source=Source(msg.topic(), msg.partition(), msg.offset(), ts),
        )

    def queue_ms(self) -> float:
        """Time between the upstream produce and this stage taking the message."""
        if self.source is None:
            return 0.0
        return max(0.0, self.taken_ms - self.source.timestamp_ms)

    def forward(self, payload: bytes, content_type: str, stage_time: h.StageTime, **changes: Any) -> Envelope:
        """The envelope for the next stage: same id and deadline, new payload, one more timing."""
        return replace(
            self,
            payload=payload,
            content_type=content_type,
            stage_times=[*self.stage_times, stage_time],
            **changes,
        )

    def headers(self) -> h.HeaderList:
        out: h.HeaderList = [
            (h.ID, self.id.encode()),
            (h.DEADLINE_MS, str(int(self.deadline.at_ms)).encode()),
            (h.CONTENT_TYPE, self.content_type.encode()),
        ]
        if self.captured_ms is not None:
            out.append((h.CAPTURED_MS, str(self.captured_ms).encode()))
        if self.stage_times:
            out.append((h.STAGE_MS, h.render_stage_ms(self.stage_times).encode()))
        if self.model:
            out.append((h.MODEL, self.model.encode()))
        if self.status != "ok":
            out.append((h.STATUS, self.status.encode()))
        out.extend((k, v.encode()) for k, v in self.trace.items())
        return out

    def error_headers(self, stage: str, reason: str, detail: str) -> h.HeaderList:
        """Headers of a P.dlq / P.late record: the original ones plus why and from where."""
        src = self.source
        return [
            *self.headers(),
            (h.ERROR_STAGE, stage.encode()),
            (h.ERROR_REASON, reason.encode()),
            (h.ERROR_DETAIL, detail[:1000].encode()),
            (h.SOURCE_TOPIC, (src.topic if src else "").encode()),
            (h.SOURCE_PARTITION, str(src.partition if src else -1).encode()),
            (h.SOURCE_OFFSET, str(src.offset if src else -1).encode()),
        ]
