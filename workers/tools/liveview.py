"""What the demo watches: every frame's terminal record (result, late or dlq), tallied and shown live.

`ResultsReader` is a plain consumer on `P.results`, `P.late` and `P.dlq` (assigned, not
subscribed: it joins no group and reads every partition from the start). It feeds a `Tally`
that counts each frame id once and keeps latencies for the whole run and for a sliding
window. `LiveView` redraws the window's numbers in place about once a second on a terminal,
and prints one line every few seconds when stdout is a file or a pipe.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from pydantic import ValidationError

from schemas.results import Result
from workers.config.settings import OntimeSettings
from workers.config.spec import STAGE_ORDER
from workers.messages import headers as h
from workers.tools.stats import RateWindow, SlidingWindow, Summary, summarize

__all__ = ["LiveView", "Observed", "ResultsReader", "Snapshot", "Tally", "outcome_of", "results_jsonl"]

Kind = Literal["result", "late", "dlq"]


@dataclass(frozen=True, slots=True)
class Observed:
    """How one frame ended: its result, or why it went to `P.late` / `P.dlq`."""

    id: str
    kind: Kind
    result: Result | None = None
    reason: str | None = None
    stage: str | None = None
    stages: tuple[h.StageTime, ...] = ()
    e2e_ms: float | None = None


def outcome_of(kind: Kind, value: bytes | None, headers: Any) -> Observed:
    """Parse one record of `P.results` / `P.late` / `P.dlq`; an unparsable result counts as dlq."""
    hd = h.as_dict(headers)
    if kind == "result":
        try:
            result = Result.model_validate_json(value or b"")
        except ValidationError:
            # Not lost, not silently dropped: a result nobody can read is counted as a dlq outcome.
            return Observed(hd.get(h.ID, "?"), "dlq", reason="invalid-result", stage="reader")
        e2e = None if result.captured_ms is None else float(result.completed_ms - result.captured_ms)
        stages = tuple(h.StageTime(s.stage, s.queue_ms, s.compute_ms) for s in result.stages)
        return Observed(result.id, "result", result=result, stages=stages, e2e_ms=e2e)
    return Observed(
        hd.get(h.ID, "?"),
        kind,
        reason=hd.get(h.ERROR_REASON),
        stage=hd.get(h.ERROR_STAGE),
        stages=tuple(h.parse_stage_ms(hd.get(h.STAGE_MS))),
    )


@dataclass(frozen=True)
class Snapshot:
    """The numbers the live view shows at one moment."""

    elapsed_s: float
    window_s: float
    sent: int
    results: int
    late: int
    dlq: int
    duplicates: int
    results_per_s: float
    e2e: Summary
    stages: dict[str, Summary]

    @property
    def in_flight(self) -> int:
        return max(0, self.sent - self.results - self.late - self.dlq)


@dataclass
class Tally:
    """Every terminal record seen so far, each frame id counted once (delivery is at-least-once)."""

    window_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    results: list[Result] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    queue_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    compute_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: dict[str, Observed] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self.clock()
        self._rate = RateWindow(self.window_s, self.clock)
        self._e2e_window = SlidingWindow(self.window_s, self.clock)
        self._stage_window = {s: SlidingWindow(self.window_s, self.clock) for s in STAGE_ORDER}

    def add(self, outcome: Observed) -> bool:
        """Count `outcome`; False (and counted as a duplicate) if its frame already ended."""
        with self._lock:
            if outcome.id in self.outcomes:
                self.duplicates += 1
                return False
            self.outcomes[outcome.id] = outcome
            self.counts[outcome.kind] += 1
            if outcome.kind != "result":
                self.reasons[f"{outcome.kind}:{outcome.stage}:{outcome.reason}"] += 1
                return True
            assert outcome.result is not None
            self.results.append(outcome.result)
            self.statuses[outcome.result.status] += 1
            self._rate.add()
            if outcome.e2e_ms is not None:
                self.e2e_ms.append(outcome.e2e_ms)
                self._e2e_window.add(outcome.e2e_ms)
            for t in outcome.stages:
                self.queue_ms[t.stage].append(t.queue_ms)
                self.compute_ms[t.stage].append(t.compute_ms)
                if t.stage in self._stage_window:
                    self._stage_window[t.stage].add(t.queue_ms + t.compute_ms)
            return True

    def ended(self, ids: set[str] | dict[str, Any]) -> int:
        """How many of `ids` have a terminal record."""
        with self._lock:
            return sum(1 for i in ids if i in self.outcomes)

    def snapshot(self, sent: int) -> Snapshot:
        with self._lock:
            return Snapshot(
                elapsed_s=self.clock() - self._started,
                window_s=self.window_s,
                sent=sent,
                results=self.counts["result"],
                late=self.counts["late"],
                dlq=self.counts["dlq"],
                duplicates=self.duplicates,
                results_per_s=self._rate.per_second(),
                e2e=self._e2e_window.summary(),
                stages={s: w.summary() for s, w in self._stage_window.items()},
            )

    def run_summary(self) -> tuple[Summary, dict[str, tuple[Summary, Summary, Summary]]]:
        """End-to-end over the whole run, and per stage (queue, compute, queue+compute)."""
        with self._lock:
            stages: dict[str, tuple[Summary, Summary, Summary]] = {}
            for s in STAGE_ORDER:
                q, c = self.queue_ms.get(s, []), self.compute_ms.get(s, [])
                stages[s] = (summarize(q), summarize(c), summarize(a + b for a, b in zip(q, c, strict=True)))
            return summarize(self.e2e_ms), stages


class ResultsReader:
    """A background consumer of the terminal topics that feeds a `Tally`."""

    def __init__(self, settings: OntimeSettings, tally: Tally, poll_s: float = 0.2) -> None:
        topics = settings.pipeline.topics
        self.kinds: dict[str, Kind] = {topics.results: "result", topics.late: "late", topics.dlq: "dlq"}
        self.settings = settings
        self.tally = tally
        self.poll_s = poll_s
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ontime-results-reader", daemon=True)
        self._ready = threading.Event()

    def start(self, timeout: float = 30.0) -> None:
        """Start reading; returns once partitions are assigned (raises on failure)."""
        self._thread.start()
        if not self._ready.wait(timeout) or self.error:
            self.stop()
            raise RuntimeError(f"results reader did not start: {self.error or 'timed out'}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

        conf: dict[str, Any] = {
            **self.settings.kafka.as_librdkafka_dict(),
            "group.id": f"ontime-demo-reader-{time.time_ns()}",
            "enable.auto.commit": "false",
            "client.id": "ontime-demo-reader",
        }
        conf.pop("group.protocol", None)
        consumer = Consumer(conf)
        try:
            meta = consumer.list_topics(timeout=10.0).topics
            parts = [
                TopicPartition(t, p, OFFSET_BEGINNING)
                for t in self.kinds
                if t in meta
                for p in meta[t].partitions
            ]
            if not parts:
                raise RuntimeError(f"none of {', '.join(self.kinds)} exists")
            consumer.assign(parts)
            self._ready.set()
            while not self._stop.is_set():
                for msg in consumer.consume(num_messages=500, timeout=self.poll_s):
                    if msg.error() is not None:
                        continue  # partition EOF and transient errors; librdkafka retries
                    kind = self.kinds.get(msg.topic() or "")
                    if kind is not None:
                        self.tally.add(outcome_of(kind, msg.value(), msg.headers()))
        except (KafkaException, RuntimeError) as exc:
            self.error = str(exc)
            self._ready.set()
        finally:
            consumer.close()


class LiveView:
    """Redraws a few lines in place on a terminal; one line every `line_every_s` otherwise."""

    def __init__(
        self, out: TextIO, budget_ms: float, tty: bool | None = None, line_every_s: float = 5.0
    ) -> None:
        self.out = out
        self.budget_ms = budget_ms
        self.tty = out.isatty() if tty is None else tty
        self.line_every_s = line_every_s
        self._drawn = 0
        self._last_line = -math.inf

    def show(self, snap: Snapshot, status: str = "", extra: list[str] | None = None) -> None:
        """Redraw (terminal: with `extra` lines below) or print one line every few seconds."""
        if self.tty:
            lines = self.render(snap, status) + (extra or [])
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self._drawn = len(lines)
        elif snap.elapsed_s - self._last_line >= self.line_every_s:
            self.out.write(self.line(snap, status) + "\n")
            self._last_line = snap.elapsed_s
        self.out.flush()

    def close(self) -> None:
        self._drawn = 0

    def render(self, snap: Snapshot, status: str = "") -> list[str]:
        e = snap.e2e
        lines = [
            f"ontime demo  {status}  {snap.elapsed_s:5.0f} s",
            f"  sent {snap.sent:>6}   results {snap.results:>6} ({snap.results_per_s:5.1f}/s)   "
            f"late {snap.late:>4}   dlq {snap.dlq:>4}   in flight {snap.in_flight:>4}",
            f"  end-to-end ms (last {snap.window_s:g} s)   p50 {e.cell('p50'):>7}   p95 {e.cell('p95'):>7}"
            f"   p99 {e.cell('p99'):>7}   budget {self.budget_ms:g}",
            f"  {'stage (queue+compute ms)':<26}{'p50':>8}{'p95':>8}",
        ]
        for stage, s in snap.stages.items():
            lines.append(f"  {stage:<26}{s.cell('p50'):>8}{s.cell('p95'):>8}")
        return lines

    def line(self, snap: Snapshot, status: str = "") -> str:
        e = snap.e2e
        stages = " ".join(f"{s} p95 {v.cell('p95')}" for s, v in snap.stages.items())
        return (
            f"[{snap.elapsed_s:4.0f} s] {status + ' ' if status else ''}"
            f"sent {snap.sent} results {snap.results} "
            f"({snap.results_per_s:.1f}/s) late {snap.late} dlq {snap.dlq} | e2e ms p50 {e.cell('p50')} "
            f"p95 {e.cell('p95')} p99 {e.cell('p99')} | {stages}"
        )


def results_jsonl(results: list[Result]) -> str:
    """The results as JSON lines, in arrival order (what `ontime report --file` reads)."""
    return "".join(json.dumps(r.model_dump(mode="json"), separators=(",", ":")) + "\n" for r in results)
