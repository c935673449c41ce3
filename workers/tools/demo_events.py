"""What `ontime demo --stream` adds to the demo: streaming devices, the aggregator, events live.

The demo's fleet becomes `StreamFleet` devices in real time (so event latency is real), the
`ontime aggregate` process runs beside the three stages, an `EventWatch` reads `P.events` and
lists events as they fire, and the summary scores them against the stream's ground truth:
event precision / recall / F1 and latency from the end of each keyword's audio. Frame accuracy
of a streamed window: its label is the keyword whose audio lies wholly inside it, or
`_background_` when no word touches it; windows holding part of a word are not scored.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from schemas.events import Event
from workers.config.settings import OntimeSettings
from workers.tools.devices import SendReport, SentFrame
from workers.tools.events.scoring import EventScore, Heard, Truth, match, write_truth
from workers.tools.liveview import LiveView, Tally
from workers.tools.processes import spawn_ontime
from workers.tools.stats import summarize
from workers.tools.stream import StreamFleet, StreamPlan, StreamReport

PARTIAL = "_partial_"  # a window holding part of a word: not scored for frame accuracy


def window_label(truths: list[Truth], spoken: list[tuple[int, int]], captured_ms: int) -> str:
    """The label a streamed window should get: keyword wholly inside, background, or partial."""
    start = captured_ms - 1000
    for t in truths:
        if start <= t.start_ms and t.end_ms <= captured_ms:
            return t.keyword
    if any(s < captured_ms and e > start for s, e in spoken):
        return PARTIAL
    return "_background_"


def as_send_report(report: StreamReport, spoken: dict[str, list[tuple[int, int]]]) -> SendReport:
    """The streaming run in the shape the demo summary reads, windows labelled as above."""
    out = SendReport(report.topic, report.devices, 1000 / report.hop_ms, clips=len(report.truths))
    out.sent, out.delivered, out.failed = report.sent, report.delivered, report.failed
    out.elapsed_s = report.audio_s
    by_device: dict[str, list[Truth]] = {}
    for t in report.truths:
        by_device.setdefault(t.device, []).append(t)
    for f in report.frames.values():
        label = window_label(by_device.get(f.device, []), spoken.get(f.device, []), f.captured_ms)
        out.frames[f.id] = SentFrame(f.id, f.device, label, f.captured_ms, "stream")
        out.per_device[f.device] += 1
        out.per_label[label] += 1
    return out


@dataclass
class EventWatch:
    """Reads `P.events` in a thread; keeps each event id once, and the newest lines to show."""

    settings: OntimeSettings
    events: dict[str, Event] = field(default_factory=dict)
    repeats: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ontime-events-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        spec = self.settings.pipeline
        conf: dict[str, Any] = {
            **self.settings.kafka.as_librdkafka_dict(),
            "group.id": f"ontime-demo-events-{time.time_ns()}",
            "enable.auto.commit": "false",
        }
        conf.pop("group.protocol", None)
        consumer = Consumer(conf)
        try:
            consumer.assign(
                [
                    TopicPartition(str(spec.topics.events), p, OFFSET_BEGINNING)
                    for p in range(spec.topics.partitions)
                ]
            )
            while not self._stop.is_set():
                for msg in consumer.consume(num_messages=100, timeout=0.2):
                    if msg.error() is not None:
                        continue
                    try:
                        event = Event.model_validate_json(msg.value() or b"")
                    except ValueError:
                        continue  # not an event: nothing to show
                    with self._lock:
                        if event.id in self.events:
                            self.repeats += 1
                        else:
                            self.events[event.id] = event
        except Exception as exc:  # shown in the summary, never a crash of the demo
            self.error = str(exc)
        finally:
            consumer.close()

    def lines(self, last: int = 6) -> list[str]:
        """The newest events, one line each, for the live view."""
        with self._lock:
            newest = sorted(self.events.values(), key=lambda e: e.emitted_ms)[-last:]
        head = [f"  events heard: {len(self.events)}" + (" (newest last)" if newest else "")]
        return head + [f"    {describe(e)}" for e in newest]


def describe(e: Event) -> str:
    at = datetime.fromtimestamp(e.start_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
    return f"{at} {e.device} heard {e.keyword!r} (score {e.score:.2f}, {e.latency_ms} ms after it ended)"


def score_events(truths: list[Truth], watch: EventWatch) -> EventScore:
    heard = [
        Heard(e.id, e.device, e.keyword, e.start_ms, e.end_ms, e.emitted_ms) for e in watch.events.values()
    ]
    return match(truths, heard)


def summary_lines(score: EventScore, watch: EventWatch) -> list[str]:
    lat = summarize(score.latencies_ms)
    lines = [
        f"  events             {score.events:>7}   ({score.hits} right, {score.wrong_keyword} wrong keyword, "
        f"{score.false_alarms} false alarms; {score.utterances} keywords in the audio"
        + (f"; {watch.repeats} repeated records" if watch.repeats else "")
        + ")",
        f"  event precision    {score.precision:6.1%}   recall {score.recall:6.1%}   F1 {score.f1:.3f}",
        f"  event latency ms   p50 {lat.cell('p50')}   p99 {lat.cell('p99')}   (event emitted − end of the "
        f"keyword's audio, {lat.count} events)",
    ]
    if watch.error:
        lines.append(f"  events reader failed: {watch.error}")
    return lines


@dataclass
class StreamedRun:
    """A streaming demo run: its ground truth, the events heard and how they score."""

    truths: list[Truth]
    watch: EventWatch
    score: EventScore

    def summary(self) -> list[str]:
        return summary_lines(self.score, self.watch)

    def write(self, run_dir: Path) -> list[Path]:
        truth, events = run_dir / "truth.jsonl", run_dir / "events.jsonl"
        write_truth(truth, self.truths)
        events.write_text("".join(e.model_dump_json() + "\n" for e in self.watch.events.values()))
        return [truth, events]


def spawn_aggregator(pipeline: str, bootstrap: str, log: Path, flags: list[str]) -> subprocess.Popen[bytes]:
    """`ontime --pipeline P [flags] aggregate` as a child process, output appended to `log`; faust's
    data directory sits beside the log, in the run directory."""
    data = str(log.parent / "aggregate-data")
    return spawn_ontime(pipeline, bootstrap, log, [*flags, "aggregate", "--data-dir", data])


def run_stream(
    settings: OntimeSettings,
    *,
    devices: int,
    seconds: float,
    hop_ms: int,
    seed: int,
    tally: Tally,
    view: LiveView,
    check: Callable[[], None],
    drain_timeout_s: float,
    out: TextIO,
) -> tuple[SendReport, Tally, StreamedRun]:
    """Stream in real time, show results and events live, drain, score the events."""
    keywords = max(1, int((seconds - 4) // 4))
    fleet = StreamFleet(settings, devices, StreamPlan(seconds=seconds, keywords=keywords), hop_ms, seed)
    watch = EventWatch(settings)
    watch.start()
    out.write(
        f"streaming devices: {devices} × {seconds:g} s of real background, {keywords} real keywords each, "
        f"a 1 s frame every {hop_ms} ms, in real time\n\n"
    )
    reports: list[StreamReport] = []
    failure: list[BaseException] = []

    def send() -> None:
        try:
            reports.append(fleet.run())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=send, name="ontime-stream-devices", daemon=True)
    printed: set[str] = set()

    def show(status: str, sent: int) -> None:
        view.show(tally.snapshot(sent), status, watch.lines())
        if not view.tty:
            for e in sorted(watch.events.values(), key=lambda e: e.emitted_ms):
                if e.id not in printed:
                    printed.add(e.id)
                    out.write(f"  event: {describe(e)}\n")

    thread.start()
    try:
        while thread.is_alive():
            check()
            show("streaming", fleet.sent)
            thread.join(timeout=1.0)
        if failure:
            raise RuntimeError(f"the streaming devices failed: {failure[0]!r}")
        report = reports[0]
        spoken = {
            device: [(report.start_ms + s.start_ms, report.start_ms + s.end_ms) for s in audio.spoken]
            for device, audio in zip(fleet.devices, fleet.audio, strict=True)
        }
        sent = as_send_report(report, spoken)
        drain_until = time.monotonic() + drain_timeout_s
        while tally.ended(sent.frames) < sent.sent and time.monotonic() < drain_until:
            check()
            show("draining", sent.sent)
            time.sleep(0.5)  # the readers fill the tally and the events
        settle = time.monotonic() + 3.0  # the aggregator answers shortly after the last result
        while time.monotonic() < settle:
            show("draining", sent.sent)
            time.sleep(0.5)
        show("done", sent.sent)
    finally:
        fleet.stop()
        thread.join(timeout=30)
        watch.stop()
    return sent, tally, StreamedRun(report.truths, watch, score_events(report.truths, watch))
