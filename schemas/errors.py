"""What a record on `P.dlq` or `P.late` says about itself (its headers, as a schema).

Those records keep the original payload unchanged; the reason lives in headers so a consumer can
replay the payload as is. `ErrorRecord.from_headers` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DLQ_REASONS = ("bad-content-type", "bad-shape", "bad-encoding", "bad-samples", "poison", "model-error")
LATE_REASONS = ("expired", "insufficient-budget", "missed")


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
        )
