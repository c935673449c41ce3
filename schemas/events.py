"""The keyword event downstream services read from `P.events` (JSON, one per utterance).

`ontime aggregate` writes one per keyword utterance it hears on a device, keyed by the device id.
The id is a function of the device and the utterance's first window, so a record repeated after
a restart of the aggregator carries the same id: consumers drop duplicates by `id`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """ "Device D heard keyword K between start_ms and end_ms (capture clock)"."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    id: str = Field(description="deterministic: `<device>@<utterance_start_ms>`")
    pipeline: str
    device: str = Field(description="device id (the Kafka key of its frames, results and events)")
    keyword: str
    start_ms: int = Field(description="estimated start of the keyword's audio, device capture clock")
    end_ms: int = Field(description="estimated end of the keyword's audio, device capture clock")
    score: float = Field(ge=0.0, le=1.0, description="peak smoothed score of the keyword")
    frames: list[str] = Field(description="ontime-ids of the results (windows) the event rests on")
    emitted_ms: int = Field(description="when the aggregator decided, aggregator wall clock")
    latency_ms: int = Field(description="emitted_ms − end_ms: from the end of the keyword's audio")
