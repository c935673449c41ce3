"""What became of one message at a stage: a leaf value type shared by stages, the loop and telemetry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from workers.messages.envelope import Envelope

Kind = Literal["emit", "late", "dlq"]
Status = Literal["ok", "degraded", "late"]

_SEVERITY = {"ok": 0, "degraded": 1, "late": 2}


@dataclass(slots=True)
class Outcome:
    """What became of one input envelope: `envelope` is the output for emit, the input otherwise."""

    kind: Kind
    envelope: Envelope
    reason: str = ""
    detail: str = ""


def worse(a: str, b: str) -> Status:
    """The more serious of two statuses: a frame degraded upstream stays degraded."""
    pick = a if _SEVERITY.get(a, 0) >= _SEVERITY.get(b, 0) else b
    return pick if pick in ("degraded", "late") else "ok"  # type: ignore[return-value]
