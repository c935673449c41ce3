"""Events against ground truth: which event found which utterance, and the rates that follow.

An event matches an utterance when the device and keyword are the same and the event's
[start_ms, end_ms] overlaps the utterance's audio widened by `tolerance_ms` on each side. Each
utterance is matched at most once; every other event is a false alarm. Times are capture-clock
milliseconds, so scoring never depends on how fast the stream was replayed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

TOLERANCE_MS = 500


@dataclass(frozen=True, slots=True)
class Truth:
    """A keyword utterance a device's stream really contains (capture clock, ms)."""

    device: str
    keyword: str
    start_ms: int
    end_ms: int
    source: str = ""


@dataclass(frozen=True, slots=True)
class Heard:
    """The part of an event scoring needs."""

    id: str
    device: str
    keyword: str
    start_ms: int
    end_ms: int
    emitted_ms: int | None = None


@dataclass
class EventScore:
    """Event-level precision / recall / F1, false alarms, and latency from the truth's end."""

    utterances: int = 0
    events: int = 0
    hits: int = 0
    wrong_keyword: int = 0
    false_alarms: int = 0  # events near no utterance of the speech streams
    background_false_alarms: int = 0  # events on background-only audio
    background_hours: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    missed: list[Truth] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.hits / self.events if self.events else 1.0

    @property
    def recall(self) -> float:
        return self.hits / self.utterances if self.utterances else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_alarms_per_hour(self) -> float | None:
        return self.background_false_alarms / self.background_hours if self.background_hours else None


def match(truths: Sequence[Truth], events: Iterable[Heard], tolerance_ms: int = TOLERANCE_MS) -> EventScore:
    """Score `events` (duplicates by id already dropped) against `truths`."""
    score = EventScore(utterances=len(truths))
    free = sorted(truths, key=lambda t: (t.device, t.start_ms))
    taken: set[int] = set()
    for event in sorted(events, key=lambda e: (e.device, e.start_ms)):
        score.events += 1
        near = [
            i
            for i, t in enumerate(free)
            if t.device == event.device
            and i not in taken
            and event.start_ms <= t.end_ms + tolerance_ms
            and event.end_ms >= t.start_ms - tolerance_ms
        ]
        same = [i for i in near if free[i].keyword == event.keyword]
        if same:
            taken.add(same[0])
            score.hits += 1
            if event.emitted_ms is not None:
                score.latencies_ms.append(float(event.emitted_ms - free[same[0]].end_ms))
        elif near:
            score.wrong_keyword += 1
        else:
            score.false_alarms += 1
    score.missed = [t for i, t in enumerate(free) if i not in taken]
    return score


def write_truth(path: Path, truths: Iterable[Truth]) -> None:
    """Ground truth as JSON lines (device, keyword, start_ms, end_ms, source)."""
    with path.open("w") as out:
        for t in truths:
            out.write(json.dumps(asdict(t), separators=(",", ":")) + "\n")


def read_truth(path: Path) -> list[Truth]:
    return [Truth(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
