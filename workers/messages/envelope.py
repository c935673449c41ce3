"""`Envelope`: one message as a stage sees it — ids, deadline, timings — independent of Kafka.

Building one never raises: a record whose headers cannot be trusted still becomes an envelope
(with a derived id and a deadline from its timestamp) that carries its `defect`, so the stage
dead-letters it with the reason. Header rules: docs/reliability.md.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from workers.errors import BadContentType, BadHeader, PoisonMessage
from workers.messages import headers as h
from workers.messages.deadline import Deadline, stamp

# uuid5 namespace of ids derived from a record's (topic, partition, offset).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ontime:record")
MAX_ID_CHARS = 128
MAX_CONTENT_TYPE_CHARS = 256
# Epoch milliseconds a device may state: 2001-09-09 .. 5138; anything else is not a time.
MIN_EPOCH_MS, MAX_EPOCH_MS = 10**12, 10**14
STATUSES = ("ok", "degraded", "late")
_MODEL = re.compile(r"[^:\x00-\x1f]{1,128}:[^:\x00-\x1f]{1,64}:[0-9a-f]{64}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
MAX_TRACESTATE_CHARS = 512


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
    # Why this frame can never be processed, found while reading its headers (None: nothing).
    defect: PoisonMessage | None = None
    # Internal headers the record carried (names); on a pipeline's input topic they are dropped.
    internal: tuple[str, ...] = ()
    # A malformed internal header: poison on an internal topic, irrelevant once dropped.
    internal_defect: PoisonMessage | None = None

    @classmethod
    def from_record(
        cls, msg: Any, *, budget_ms: float, skew_ms: float, taken_ms: float, content_type: str | None = None
    ) -> Envelope:
        """Build from a confluent_kafka.Message; a missing id or deadline is stamped here. Never raises."""
        _, ts = msg.timestamp()
        ts = int(ts) if ts and ts > 0 else int(taken_ms)
        source = Source(msg.topic(), msg.partition(), msg.offset(), ts)
        env = cls(
            id="",  # the record's own id, else (derived only when needed: a SHA-1) one from source
            key=msg.key(),
            payload=msg.value(),
            content_type=content_type or "",
            deadline=Deadline(stamp(None, ts, budget_ms, skew_ms, now=taken_ms)),
            captured_ms=None,
            taken_ms=taken_ms,
            source=source,
        )
        env._read_headers(msg, budget_ms=budget_ms, skew_ms=skew_ms, ts=ts)
        if not env.id:
            env.id = derived_id(source)
        return env

    def _read_headers(self, msg: Any, *, budget_ms: float, skew_ms: float, ts: int) -> None:
        """Fill in what the record's headers say; a defect is kept, never raised."""
        env, taken_ms = self, self.taken_ms
        try:
            raw = h.read(msg)
            env.internal = h.internal_names(raw)
            hd = h.decode(raw)
        except BadHeader as exc:
            env.defect = exc
            return
        env.trace = _trace(hd)
        env.captured_ms = _epoch_ms(hd.get(h.CAPTURED_MS))
        content = hd.get(h.CONTENT_TYPE, env.content_type)
        if len(content) > MAX_CONTENT_TYPE_CHARS:  # not copied into a DLQ record's headers
            env.defect = BadContentType(f"{h.CONTENT_TYPE} is {len(content)} characters long")
            return
        env.content_type = content
        env.stage_times = h.parse_stage_ms(hd.get(h.STAGE_MS))
        try:
            env.id = _id(hd.get(h.ID)) or ""
            deadline = hd.get(h.DEADLINE_MS)
            if deadline and _epoch_ms(deadline) is None:
                raise BadHeader(
                    f"{h.DEADLINE_MS} must be epoch milliseconds in [{MIN_EPOCH_MS}, {MAX_EPOCH_MS}),"
                    f" got {deadline[:40]!r}"
                )
            env.deadline = Deadline(stamp(deadline, ts, budget_ms, skew_ms, now=taken_ms))
        except BadHeader as exc:
            env.defect = exc
        try:
            env.model, env.status = _model(hd.get(h.MODEL)), _status(hd.get(h.STATUS))
        except BadHeader as exc:
            env.internal_defect = exc

    def distrust(self) -> tuple[str, ...]:
        """Drop what internal headers said (the record came from a device); returns their names."""
        dropped, self.internal = self.internal, ()
        self.stage_times, self.model, self.status, self.internal_defect = [], None, "ok", None
        return dropped

    def queue_ms(self) -> float:
        """Time between the upstream produce and this stage taking the message."""
        if self.source is None:
            return 0.0
        return max(0.0, self.taken_ms - self.source.timestamp_ms)

    def forward(self, payload: bytes, content_type: str, stage_time: h.StageTime, **changes: Any) -> Envelope:
        """The envelope for the next stage: same id and deadline, new payload, one more timing.

        Built field by field (`dataclasses.replace` costs several times more, once per frame
        per stage).
        """
        env = Envelope(
            self.id,
            self.key,
            payload,
            content_type,
            self.deadline,
            self.captured_ms,
            self.taken_ms,
            [*self.stage_times, stage_time],
            self.trace,
            self.model,
            self.status,
            self.source,
            self.defect,
            self.internal,
            self.internal_defect,
        )
        for name, value in changes.items():
            setattr(env, name, value)
        return env

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


def derived_id(source: Source) -> str:
    """The id of a frame that came without one: the same for every read of the same record."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{source.topic}/{source.partition}/{source.offset}"))


def _id(value: str | None) -> str | None:
    """A device-given id: printable, at most MAX_ID_CHARS; empty means none."""
    if not value:
        return None
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise BadHeader(f"{h.ID} must be at most {MAX_ID_CHARS} printable characters, got {value[:40]!r}")
    return value


def _epoch_ms(value: str | None) -> int | None:
    """Strict epoch milliseconds (ASCII digits, in range), else None."""
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 15):
        return None
    ms = int(text)
    return ms if MIN_EPOCH_MS <= ms < MAX_EPOCH_MS else None


def _model(value: str | None) -> str | None:
    if value is None:
        return None
    if not _MODEL.fullmatch(value):
        raise BadHeader(f"{h.MODEL} must be name:version:sha256, got {value[:40]!r}")
    return value


def _status(value: str | None) -> str:
    if value is None:
        return "ok"
    if value not in STATUSES:
        raise BadHeader(f"{h.STATUS} must be one of {', '.join(STATUSES)}, got {value[:40]!r}")
    return value


def _trace(hd: dict[str, str]) -> dict[str, str]:
    """W3C trace context if well-formed; a malformed one is dropped (tracing is best effort)."""
    parent = hd.get(h.TRACEPARENT)
    if parent is None or not _TRACEPARENT.fullmatch(parent):
        return {}
    state = hd.get(h.TRACESTATE)
    if state is None or len(state) > MAX_TRACESTATE_CHARS or not state.isprintable():
        return {h.TRACEPARENT: parent}
    return {h.TRACEPARENT: parent, h.TRACESTATE: state}
