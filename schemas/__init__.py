"""Message schemas shared with downstream services; JSON Schema copies live in `schemas/json/`."""

from schemas.errors import ErrorRecord
from schemas.events import Event
from schemas.results import ModelRef, Result, Score, StageLatency

__all__ = ["ErrorRecord", "Event", "ModelRef", "Result", "Score", "StageLatency"]
