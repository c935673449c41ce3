"""The fault bench's ledger: every word the pipeline said about each frame, and a row's tally.

A frame's *words* are its records on P.results, P.late and P.dlq. A `skipped` late record has no
id: it stands for `ontime-late-count` frames from `ontime-source-offset` on its source topic, so
the ledger also keeps (topic, partition, offset) → id for P.raw (from the device's delivery
reports), P.features and P.scores, and attributes each range by offset.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Message

from workers.config.settings import OntimeSettings
from workers.messages import headers as h
from workers.messages.reasons import SKIPPED


@dataclass
class Row:
    """What became of the frames sent during one fault in one delivery mode."""

    fault: str
    mode: str
    sent: int = 0
    results: int = 0
    late: int = 0
    dlq: int = 0
    lost: int = 0
    duplicates: int = 0
    max_copies: int = 0
    recover_s: float | None = None
    late_reasons: Counter[str] = field(default_factory=Counter)
    lost_after: Counter[str] = field(default_factory=Counter)  # last topic a lost frame reached
    lost_ids: list[str] = field(default_factory=list)
    largest_batch: dict[str, int] = field(default_factory=dict)  # per stage, a bucket bound (batches.py)
    note: str = ""


class Ledger:
    """Thread-safe record of words, offsets and skipped ranges; readers and devices write to it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[str] = Counter()
        self.kinds: dict[str, set[str]] = {}
        self.first_result_ms: dict[str, int] = {}
        self.late_reason: dict[str, str] = {}
        self.offsets: dict[tuple[str, int, int], str] = {}
        self.ranges: list[tuple[str, int, int, int]] = []  # topic, partition, first offset, count

    def word(self, kind: str, frame: str, reason: str = "", appended_ms: int | None = None) -> None:
        """One record about `frame` on P.results (`result`), P.late (`late`) or P.dlq (`dlq`)."""
        with self.lock:
            self.copies[frame] += 1
            self.kinds.setdefault(frame, set()).add(kind)
            if kind == "late":
                self.late_reason[frame] = reason
            if kind == "result" and appended_ms is not None and frame not in self.first_result_ms:
                self.first_result_ms[frame] = appended_ms

    def offset(self, topic: str, partition: int, offset: int, frame: str) -> None:
        with self.lock:
            self.offsets[(topic, partition, offset)] = frame

    def skipped(self, topic: str, partition: int, first: int, count: int) -> None:
        with self.lock:
            self.ranges.append((topic, partition, first, count))

    def _last_hop(self, frame: str) -> str:
        """The farthest pipeline topic a frame was seen on (P.raw < P.features < P.scores), by the
        offsets the device and the reader recorded: where a lost frame stopped. Caller holds the lock."""
        seen = {topic.rsplit(".", 1)[-1] for (topic, _, _), f in self.offsets.items() if f == frame}
        return next((hop for hop in ("scores", "features", "raw") if hop in seen), "nowhere")

    def in_ranges(self) -> Counter[str]:
        """How many skipped ranges each frame falls in, by offset."""
        hits: Counter[str] = Counter()
        with self.lock:
            for topic, part, first, count in self.ranges:
                for off in range(first, first + count):
                    frame = self.offsets.get((topic, part, off))
                    if frame is not None:
                        hits[frame] += 1
        return hits

    def accounted(self, ids: Sequence[str]) -> int:
        """Frames of `ids` with at least one word (a record or a skipped range)."""
        hits = self.in_ranges()
        with self.lock:
            return sum(1 for i in ids if self.copies[i] or hits[i])

    def tally(self, row: Row, ids: Sequence[str], sent_ms: dict[str, int], ended_ms: int) -> Row:
        """Fill `row` for the frames `ids`; recovery counts from `ended_ms` (the fault's end).

        Final word: a result if there is one, else late, else dlq; every word beyond the first
        is a duplicate; recovery = first broker append time of a result for a frame sent at or
        after the end, minus the end.
        """
        hits = self.in_ranges()
        row.sent = len(ids)
        after: list[int] = []
        with self.lock:
            for i in ids:
                copies = self.copies[i] + hits[i]
                kinds = self.kinds.get(i, set())
                if copies == 0:
                    row.lost += 1
                    row.lost_after[self._last_hop(i)] += 1
                    row.lost_ids.append(i)
                    continue
                row.duplicates += copies - 1
                row.max_copies = max(row.max_copies, copies)
                if "result" in kinds:
                    row.results += 1
                    if sent_ms.get(i, 0) >= ended_ms and i in self.first_result_ms:
                        after.append(self.first_result_ms[i])
                elif "late" in kinds or hits[i]:
                    row.late += 1
                    row.late_reasons[self.late_reason.get(i, SKIPPED)] += 1
                else:
                    row.dlq += 1
        if after:
            row.recover_s = max(0.0, (min(after) - ended_ms) / 1000.0)
        return row


class PipelineReader:
    """Reads what the pipeline said into a Ledger: read_committed, from the broker, never the proxy.

    P.features and P.scores are read for their (partition, offset) → id only, so a skipped range
    reported by infer or postprocess can be attributed as well as one on P.raw.
    """

    def __init__(self, settings: OntimeSettings, bootstrap: str, ledger: Ledger) -> None:
        t = settings.pipeline.topics
        self.topics = t
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-faults-{settings.pipeline.name}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 50,
                "log_level": 0,  # the faults are deliberate: their connection errors are noise here
            }
        )
        self.consumer.subscribe([t.results, t.late, t.dlq, t.features, t.scores])
        self.ledger = ledger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-faults-words", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self.consumer.consume(num_messages=500, timeout=0.2):
                if msg.error() is None:
                    self._take(msg)

    def _take(self, msg: Message) -> None:
        topic, t = msg.topic() or "", self.topics
        hd = h.as_dict(msg.headers())  # type: ignore[arg-type]
        frame = hd.get(h.ID, "")
        if topic in (t.features, t.scores):
            if frame:
                self.ledger.offset(topic, msg.partition() or 0, msg.offset() or 0, frame)
            return
        reason = hd.get(h.ERROR_REASON, "")
        if topic == t.late and not frame and reason == SKIPPED:
            part, first = hd.get(h.SOURCE_PARTITION, ""), hd.get(h.SOURCE_OFFSET, "")
            count = hd.get(h.LATE_COUNT, "1")
            if part.isdigit() and first.isdigit() and count.isdigit():
                self.ledger.skipped(hd.get(h.SOURCE_TOPIC, ""), int(part), int(first), int(count))
            return
        kind = "result" if topic == t.results else "late" if topic == t.late else "dlq"
        stamp_type, stamp = msg.timestamp()
        appended = stamp if stamp_type == TIMESTAMP_LOG_APPEND_TIME else int(time.time() * 1000)
        self.ledger.word(kind, frame, reason, appended if kind == "result" else None)
