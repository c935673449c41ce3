"""The result record downstream services read from `P.results` (JSON, one per frame)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.messages import headers as h


class ModelRef(BaseModel):
    """Which model answered: enough to find its card and reproduce the answer."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    score: float = Field(ge=0.0, le=1.0)


class StageLatency(BaseModel):
    """Where one stage's share of the budget went for this frame."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    queue_ms: float
    compute_ms: float


class Result(BaseModel):
    """One frame's answer, with its model, status and own latency breakdown."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    id: str = Field(description=f"{h.ID} of the frame, unchanged through all stages")
    pipeline: str
    device: str | None = Field(description="device id (the Kafka key)")
    label: str
    score: float = Field(ge=0.0, le=1.0)
    top: list[Score]
    status: Literal["ok", "degraded", "late"]
    model: ModelRef
    captured_ms: int | None = Field(description="device capture time, device clock")
    deadline_ms: int = Field(description="absolute deadline, Unix epoch ms")
    completed_ms: int = Field(description="when the last stage produced this result, worker clock")
    stages: list[StageLatency]
