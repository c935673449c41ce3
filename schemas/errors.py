"""What a record on `P.dlq` or `P.late` says about itself (its headers, as a schema).

Dead letters keep the original payload unchanged, so a consumer can replay it as is; late records
point at their source (topic, partition, offset) and carry the payload only with
`late_payload: copy`. A `skipped` late record stands for `count` consecutive source offsets
starting at `source_offset`. The reason lives in headers; `ErrorRecord.from_headers` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DLQ_REASONS = (
    "bad-header",
    "bad-content-type",
    "bad-shape",
    "bad-encoding",
    "bad-dtype",
    "bad-samples",
    "poison",
    "model-error",
    "too-large",  # an output over the producer's limit, dead-lettered by reference (workers/loop/outputs.py)
)
LATE_REASONS = ("expired", "insufficient-budget", "missed", "skipped")


class ErrorRecord(BaseModel):
    """Why a frame left the pipeline early, and where it came from."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["dlq", "late"]
    id: str | None
    stage: str = Field(description="stage that routed it (ontime-error-stage)")
    reason: str = Field(description="short code (ontime-error-reason)")
    detail: str = Field(description="human-readable explanation (ontime-error-detail)")
    source_topic: str
    source_partition: int
    source_offset: int
    deadline_ms: int | None = None
    count: int = Field(1, ge=1, description="frames this record stands for (ontime-late-count)")

    @classmethod
    def from_headers(cls, kind: Literal["dlq", "late"], headers: Mapping[str, str]) -> ErrorRecord:
        deadline = headers.get("ontime-deadline-ms")
        return cls(
            kind=kind,
            id=headers.get("ontime-id"),
            stage=headers.get("ontime-error-stage", ""),
            reason=headers.get("ontime-error-reason", ""),
            detail=headers.get("ontime-error-detail", ""),
            source_topic=headers.get("ontime-source-topic", ""),
            source_partition=int(headers.get("ontime-source-partition", "-1")),
            source_offset=int(headers.get("ontime-source-offset", "-1")),
            deadline_ms=int(deadline) if deadline and deadline.lstrip("-").isdigit() else None,
            count=_count(headers.get("ontime-late-count")),
        )


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() and int(value) >= 1 else 1
