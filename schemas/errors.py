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

from workers.messages import headers as h
from workers.messages.reasons import DLQ_REASONS, LATE_REASONS

__all__ = ["DLQ_REASONS", "LATE_REASONS", "ErrorRecord"]


class ErrorRecord(BaseModel):
    """Why a frame left the pipeline early, and where it came from."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["dlq", "late"]
    id: str | None
    stage: str = Field(description=f"stage that routed it ({h.ERROR_STAGE})")
    reason: str = Field(description=f"short code ({h.ERROR_REASON})")
    detail: str = Field(description=f"human-readable explanation ({h.ERROR_DETAIL})")
    source_topic: str
    source_partition: int
    source_offset: int
    deadline_ms: int | None = None
    count: int = Field(1, ge=1, description=f"frames this record stands for ({h.LATE_COUNT})")

    @classmethod
    def from_headers(cls, kind: Literal["dlq", "late"], headers: Mapping[str, str]) -> ErrorRecord:
        deadline = headers.get(h.DEADLINE_MS)
        return cls(
            kind=kind,
            id=headers.get(h.ID),
            stage=headers.get(h.ERROR_STAGE, ""),
            reason=headers.get(h.ERROR_REASON, ""),
            detail=headers.get(h.ERROR_DETAIL, ""),
            source_topic=headers.get(h.SOURCE_TOPIC, ""),
            source_partition=int(headers.get(h.SOURCE_PARTITION, "-1")),
            source_offset=int(headers.get(h.SOURCE_OFFSET, "-1")),
            deadline_ms=int(deadline) if deadline and deadline.lstrip("-").isdigit() else None,
            count=_count(headers.get(h.LATE_COUNT)),
        )


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() and int(value) >= 1 else 1
