"""Model rollout records on the control topic: the plan per stage, and each replica's answer.

`model/<stage>` holds what the stage should serve: the serving version, an optional canary
candidate with its share of devices, the version it replaced (what `rollback` returns to), and
the id of the change. The topic is compacted, so the newest plan per stage is the stage's
state: a replica that starts later reads it from the beginning and serves the same version.
`ack/<stage>/<replica>` is a replica's answer to a plan: applied, or refused and why.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

PLAN_PREFIX = "model/"
ACK_PREFIX = "ack/"


def plan_key(stage: str) -> bytes:
    return f"{PLAN_PREFIX}{stage}".encode()


def ack_key(stage: str, replica: str) -> bytes:
    return f"{ACK_PREFIX}{stage}/{replica}".encode()


@dataclass(frozen=True, slots=True)
class Plan:
    """What one stage serves: `serving`, and `candidate` for a `share` of devices (canary)."""

    stage: str
    serving: str
    rollout: str
    at_ms: int
    previous: str | None = None
    candidate: str | None = None
    share: float = 0.0
    by: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Plan:
        """Raises ValueError on anything that is not a plan."""
        try:
            data = json.loads(value)
            plan = cls(
                stage=str(data["stage"]),
                serving=str(data["serving"]),
                rollout=str(data["rollout"]),
                at_ms=int(data["at_ms"]),
                previous=None if data.get("previous") is None else str(data["previous"]),
                candidate=None if data.get("candidate") is None else str(data["candidate"]),
                share=float(data.get("share", 0.0)),
                by=str(data.get("by", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a model plan: {exc}") from None
        if not 0.0 <= plan.share <= 1.0:
            raise ValueError(f"model plan share {plan.share} is not within [0, 1]")
        return plan


@dataclass(frozen=True, slots=True)
class Ack:
    """A replica's answer to plan `rollout`: what it serves now, and why it refused, if it did."""

    stage: str
    replica: str
    rollout: str
    ok: bool
    serving: str
    at_ms: int
    candidate: str | None = None
    share: float = 0.0
    refused: str = ""  # a code of workers/stages/candidate.py REFUSALS
    reason: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Ack:
        """Raises ValueError on anything that is not an acknowledgement."""
        try:
            data = json.loads(value)
            return cls(
                stage=str(data["stage"]),
                replica=str(data["replica"]),
                rollout=str(data["rollout"]),
                ok=bool(data["ok"]),
                serving=str(data["serving"]),
                at_ms=int(data["at_ms"]),
                candidate=None if data.get("candidate") is None else str(data["candidate"]),
                share=float(data.get("share", 0.0)),
                refused=str(data.get("refused", "")),
                reason=str(data.get("reason", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a model acknowledgement: {exc}") from None
