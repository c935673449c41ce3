"""Names and parsing of the `ontime-*` Kafka headers fixed by DESIGN.md."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ID = "ontime-id"
DEADLINE_MS = "ontime-deadline-ms"
CAPTURED_MS = "ontime-captured-ms"
CONTENT_TYPE = "ontime-content-type"
STAGE_MS = "ontime-stage-ms"
MODEL = "ontime-model"
STATUS = "ontime-status"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

ERROR_STAGE = "ontime-error-stage"
ERROR_REASON = "ontime-error-reason"
ERROR_DETAIL = "ontime-error-detail"
SOURCE_TOPIC = "ontime-source-topic"
SOURCE_PARTITION = "ontime-source-partition"
SOURCE_OFFSET = "ontime-source-offset"
# On a P.late record that stands for a skipped range of frames: how many (default 1).
LATE_COUNT = "ontime-late-count"

HeaderList = list[tuple[str, bytes]]
"""Headers as confluent-kafka produces them."""


def as_dict(headers: Iterable[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    """Decode headers to text; the last value of a repeated key wins. Undecodable bytes are replaced."""
    out: dict[str, str] = {}
    for key, value in headers or ():
        if value is None:
            out[key] = ""
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8", errors="replace")
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class StageTime:
    """Time one stage spent on one message: waiting in its queue, then computing."""

    stage: str
    queue_ms: float
    compute_ms: float

    def render(self) -> str:
        return f"{self.stage}={self.queue_ms:.2f}/{self.compute_ms:.2f}"


def parse_stage_ms(value: str | None) -> list[StageTime]:
    """Parse `preprocess=0.80/2.10,infer=3.00/1.20`; malformed pairs are skipped, never fatal."""
    times: list[StageTime] = []
    for part in (value or "").split(","):
        stage, _, rest = part.strip().partition("=")
        queue, _, compute = rest.partition("/")
        try:
            times.append(StageTime(stage, float(queue), float(compute)))
        except ValueError:
            continue
    return times


def render_stage_ms(times: Sequence[StageTime]) -> str:
    return ",".join(t.render() for t in times)
