"""`ontime bench events`: keyword events on held-out audio through the real pipeline.

Held-out means: human keyword recordings (asterisk speaker, klettres speakers), held-out unknown
words and held-out noise files (pipelines/acoustic/streams.py source "eval"); the detector was
tuned on other audio only (`--tune`, source "tune"). Streaming devices replay their audio on the
capture clock into a private copy of the pipeline — broker, three stage processes, one
`ontime aggregate` process — and the events that come out are matched to the ground truth
(workers/tools/events/scoring.py). Four conditions, each on its own devices:

- clean: keywords over a quiet background → event precision / recall / F1 (target F1 ≥ 0.9)
- noisy: the same over louder real background (`--snr-db`, default 10 dB)
- words: real non-keyword words only → false alarms per 100 words spoken
- background: background recordings only → false alarms per hour (target ≤ 1)

Replay is faster than real time (`--rate` frames/s), so event latency here is not a real-time
number; the demo measures that (`ontime demo --stream`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from schemas.events import Event
from workers.config.settings import OntimeSettings
from workers.tools.bench.harness import (
    BenchError,
    Collector,
    Workers,
    broker,
    create_topics,
    delete_topics,
    private_pipeline,
    wait_assigned,
)
from workers.tools.events.conditions import Condition, conditions, spec_line
from workers.tools.events.scoring import EventScore, Heard, Truth, match
from workers.tools.processes import REPO_ROOT
from workers.tools.stream import StreamFleet

if TYPE_CHECKING:
    from workers.tools.events.tune import Tuned


class EventReader:
    """Every event on `P.events`, first copy of each id kept, repeats counted."""

    def __init__(self, settings: OntimeSettings) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        spec = settings.pipeline
        self.consumer = Consumer(
            {
                **settings.kafka.as_librdkafka_dict(),
                "group.id": "unused-bench-events",
                "enable.auto.commit": "false",
            }
        )
        self.consumer.assign(
            [
                TopicPartition(str(spec.topics.events), p, OFFSET_BEGINNING)
                for p in range(spec.topics.partitions)
            ]
        )
        self.events: dict[str, Event] = {}
        self.repeats = 0
        self.last_ms = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self.consumer.consume(num_messages=500, timeout=0.2):
                if msg.error() is not None:
                    continue
                event = Event.model_validate_json(msg.value() or b"")
                if event.id in self.events:
                    self.repeats += 1
                else:
                    self.events[event.id] = event
                self.last_ms = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def run_bench(
    settings: OntimeSettings,
    out: TextIO,
    *,
    speech_minutes: float = 8.0,
    background_hours: float = 1.0,
    snr_db: float = 10.0,
    rate: float = 120.0,
    seed: int = 7,
) -> dict[str, EventScore]:
    """Stream every condition through the pipeline and score the events; prints the table."""
    conds = conditions(speech_minutes, background_hours, snr_db)
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="ontime-bench-events-") as tmp:
        run_dir = Path(tmp)
        s = private_pipeline(settings, bootstrap, "evt", budget_ms=60_000)
        create_topics(s)
        workers = Workers(s, run_dir)
        aggregator: subprocess.Popen[bytes] | None = None
        collector = Collector(s)
        reader: EventReader | None = None
        try:
            workers.start()
            aggregator = _spawn_aggregator(s, run_dir)
            wait_assigned(s, ["aggregate"], 180.0, workers.check_alive)
            collector.start()
            reader = EventReader(s)
            out.write(f"pipeline {s.pipeline.name}: 3 stage processes + ontime aggregate on {bootstrap}\n")
            hop = s.pipeline.events.hop_ms
            for i, c in enumerate(conds):
                names = c.device_names()
                speed = max(1.0, rate / (c.devices * 1000 / hop))
                fleet = StreamFleet(s, c.devices, c.plan, hop, seed + i, speed=speed, device_names=names)
                start = int(time.time() * 1000) - int(c.plan.seconds * 1000) - 60_000
                began = time.monotonic()
                report = fleet.run(start_ms=start)
                c.truths, c.frames, c.words, c.names = (
                    report.truths,
                    set(report.frames),
                    report.speech_words,
                    names,
                )
                out.write(
                    f"  {c.name:<11} {c.devices} devices × {c.plan.seconds:g} s: {report.sent} frames in "
                    f"{time.monotonic() - began:.0f} s, {len(c.truths)} keywords, {c.words} other words\n"
                )
                out.flush()
                if report.failed:
                    raise BenchError(f"{report.failed} frames of {c.name} not delivered")
            frames = set().union(*(c.frames for c in conds))
            _drain(collector, reader, frames, workers, aggregator)
            accounted = collector.accounted(frames)
            scores = {}
            for c in conds:
                mine = set(c.names)
                heard = [
                    Heard(e.id, e.device, e.keyword, e.start_ms, e.end_ms, e.emitted_ms)
                    for e in reader.events.values()
                    if e.device in mine
                ]
                scores[c.name] = match(c.truths, heard)
                if c.name == "background":
                    scores[c.name].background_false_alarms = scores[c.name].false_alarms
                    scores[c.name].background_hours = c.devices * c.plan.seconds / 3600
            _write_run(run_dir, conds, reader)
            out.write(render(scores, conds, s, len(frames), accounted, reader.repeats, snr_db))
            return scores
        finally:
            if reader is not None:
                reader.stop()
            collector.stop()
            if aggregator is not None and aggregator.poll() is None:
                aggregator.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    aggregator.wait(30)
                if aggregator.poll() is None:
                    aggregator.kill()
            workers.stop()
            delete_topics(s)


def _spawn_aggregator(settings: OntimeSettings, run_dir: Path) -> subprocess.Popen[bytes]:
    path = run_dir / f"{settings.pipeline.name}.yaml"  # written by Workers.start
    log = run_dir / f"{settings.pipeline.name}-aggregate.log"
    cmd = [sys.executable, "-m", "workers.cli", "--pipeline", str(path), "--bootstrap"]
    cmd += [settings.kafka.bootstrap_servers, "aggregate", "--data-dir", str(run_dir / "aggregate-data")]
    with log.open("ab") as sink:
        return subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _drain(
    collector: Collector, reader: EventReader, frames: set[str], workers: Workers, aggregator: Any
) -> None:
    """Until every frame has a terminal record and no event has come for a few seconds."""
    give_up = time.monotonic() + 600
    while time.monotonic() < give_up:
        workers.check_alive()
        if aggregator.poll() is not None:
            raise BenchError("the aggregator exited; see its log")
        if collector.accounted(frames) >= len(frames) and time.monotonic() - reader.last_ms > 5.0:
            return
        time.sleep(0.5)  # the collector and reader fill in the background


def _write_run(run_dir: Path, conds: list[Condition], reader: EventReader) -> None:
    keep = Path(".ontime") / f"bench-events-{time.strftime('%Y%m%d-%H%M%S')}"
    keep.mkdir(parents=True, exist_ok=True)
    (keep.parent / ".gitignore").write_text("*\n")
    with (keep / "truth.jsonl").open("w") as f:
        for c in conds:
            for t in c.truths:
                f.write(json.dumps(_truth(t)) + "\n")
    with (keep / "events.jsonl").open("w") as f:
        for e in reader.events.values():
            f.write(e.model_dump_json() + "\n")


def _truth(t: Truth) -> dict[str, Any]:
    return {
        "device": t.device,
        "keyword": t.keyword,
        "start_ms": t.start_ms,
        "end_ms": t.end_ms,
        "source": t.source,
    }


def render(
    scores: dict[str, EventScore],
    conds: list[Condition],
    settings: OntimeSettings,
    frames: int,
    accounted: int,
    repeats: int,
    snr_db: float,
) -> str:
    e = settings.pipeline.events
    lines = [
        "",
        f"EVENTS  held-out audio, detector {spec_line(e)} (tuned on tuning audio only)",
        f"  frames {frames}, accounted for {accounted}; repeated event records (same id) {repeats}",
        f"  {'condition':<24}{'utterances':>11}{'events':>8}{'hits':>6}{'wrong kw':>9}{'false':>7}"
        f"{'precision':>10}{'recall':>8}{'F1':>7}",
    ]
    by = {c.name: c for c in conds}
    rows = (
        ("clean", "clean speech"),
        ("noisy", f"noisy ({snr_db:g} dB SNR)"),
        ("more", "clean, more speakers"),
    )
    for name, label in rows:
        if name not in scores:
            continue
        s = scores[name]
        lines.append(
            f"  {label:<24}{s.utterances:>11}{s.events:>8}{s.hits:>6}{s.wrong_keyword:>9}{s.false_alarms:>7}"
            f"{s.precision:>10.3f}{s.recall:>8.3f}{s.f1:>7.3f}"
        )
    words = scores["words"]
    spoken = by["words"].words
    per100 = 100 * words.events / spoken if spoken else 0.0
    lines.append(f"  non-keyword words: {words.events} events on {spoken} words = {per100:.1f} per 100 words")
    bg = scores["background"]
    lines.append(
        f"  background only: {bg.events} false alarms in {bg.background_hours:.2f} h = "
        f"{bg.false_alarms_per_hour or 0.0:.2f} per hour"
    )
    clean, bgh = scores["clean"].f1, bg.false_alarms_per_hour or 0.0
    lines.append(
        f"  targets: F1 ≥ 0.9 on clean speech: {'met' if clean >= 0.9 else 'NOT met'} ({clean:.3f}); "
        f"≤ 1 false alarm per hour of background: {'met' if bgh <= 1.0 else 'NOT met'} ({bgh:.2f})"
    )
    missed = scores["clean"].missed
    if missed:
        from collections import Counter

        counts = Counter(t.keyword for t in missed)
        lines.append("  missed on clean speech: " + ", ".join(f"{k} ×{n}" for k, n in counts.most_common()))
    return "\n".join(lines) + "\n"


def run_tune(
    settings: OntimeSettings,
    out: TextIO,
    keyword_minutes: float,
    background_minutes: float,
    *,
    per_keyword: bool = True,
    write: Path | None = None,
) -> int:
    from workers.tools.events.tune import tune, write_events_block

    def progress(line: str) -> None:
        out.write(f"  … {line}\n")
        out.flush()

    out.write(
        f"tuning audio: espeak-ng voices the models never saw (3 rates/pitches each), training noise files; "
        f"{keyword_minutes:g} min of keywords clean + {keyword_minutes:g} min at 10 dB SNR, "
        f"{background_minutes:g} min of background only\n"
    )
    out.flush()
    outcome = tune(settings, keyword_minutes, background_minutes, progress=progress, per_keyword=per_keyword)
    best, table = outcome.best, outcome.table
    table.sort(key=lambda t: (-round(t.speech.f1, 3), t.speech.background_false_alarms))
    within = [t for t in table if (t.speech.false_alarms_per_hour or 0.0) <= 1.0]
    families: dict[tuple[object, ...], Tuned] = {}
    for t in within:
        families.setdefault((t.spec.hop_ms, t.spec.pool, t.spec.margin, t.spec.min_top), t)
    rows = sorted(
        families.values(), key=lambda t: (t.spec.hop_ms, t.spec.pool, t.spec.margin, t.spec.min_top)
    )
    out.write(
        "best setting of each rule (hop, pooling, margin, top-label check) "
        "with ≤ 1 background false alarm per hour\n"
    )
    _tune_rows(out, rows)
    out.write("best settings whatever their false alarms\n")
    _tune_rows(out, table[:3])
    if best.thresholds:
        out.write("the pick, then with per-keyword thresholds (calibrated on the same tuning audio; *)\n")
        _tune_rows(out, [outcome.common, outcome.final])
    out.write(
        f"chosen (highest F1 on tuning speech with ≤ 1 background false alarm per hour): {spec_line(best)}\n"
    )
    if write is not None:
        write_events_block(write, best)
        out.write(f"written under `events:` in {write} (devices stream at hop_ms)\n")
    else:
        out.write(
            "put these under `events:` in the pipeline YAML (devices stream at hop_ms), "
            "or rerun with --write\n"
        )
    return 0


def run_why(
    settings: OntimeSettings,
    out: TextIO,
    speech_minutes: float,
    background_hours: float,
    snr_db: float,
    seed: int,
) -> int:
    """The benchmark's audio offline, with a cause for every miss and false alarm."""
    from workers.tools.events.diagnose import diagnose, eval_streams
    from workers.tools.events.diagnose import render as render_why

    spec = settings.pipeline.events

    def progress(line: str) -> None:
        out.write(f"  … {line}\n")
        out.flush()

    streams = eval_streams(
        settings, spec.hop_ms, speech_minutes, background_hours, snr_db, seed, progress=progress
    )
    out.write(render_why(diagnose(spec, streams), spec))
    return 0


def _tune_rows(out: TextIO, rows: list[Tuned]) -> None:
    """F1 is on all tuning keyword speech (clean + 10 dB); clean F1 on the clean half only."""
    out.write(
        f"  {'hop':>4}{'smooth':>7}{'pool':>5}{'margin':>7}{'top':>4}{'thresh':>7}{'refr':>6}"
        f"{'P':>7}{'R':>7}{'F1':>7}{'clean F1':>9}{'bg FA/h':>8}\n"
    )
    for t in rows:
        e, sp = t.spec, t.speech
        thresh = f"{e.threshold:.2f}" + ("*" if e.thresholds else "")
        out.write(
            f"  {e.hop_ms:>4}{e.smooth_windows:>7}{e.pool:>5}{e.margin:>7.1f}{e.min_top:>4}"
            f"{thresh:>7}{e.refractory_ms:>6}{sp.precision:>7.3f}{sp.recall:>7.3f}{sp.f1:>7.3f}"
            f"{t.clean.f1:>9.3f}{sp.false_alarms_per_hour or 0.0:>8.2f}\n"
        )


def register_cli(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "events", help="keyword event precision/recall/F1 and false alarms per hour"
    )
    bench.add_argument("--speech-minutes", type=float, default=8.0, help="audio per speech condition")
    bench.add_argument("--background-hours", type=float, default=1.0, help="background-only audio")
    bench.add_argument("--snr-db", type=float, default=10.0, help="background level of the noisy condition")
    bench.add_argument(
        "--rate", type=float, default=120.0, help="frames/s to replay at (faster than real time)"
    )
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--tune", action="store_true", help="tune the detector on tuning audio instead")
    bench.add_argument(
        "--tune-speech-minutes",
        type=float,
        default=10.0,
        help="with --tune: minutes of keyword speech per level",
    )
    bench.add_argument(
        "--tune-background-hours", type=float, default=3.0, help="with --tune: hours of background only"
    )
    bench.add_argument(
        "--no-per-keyword",
        dest="per_keyword",
        action="store_false",
        help="with --tune: one threshold for every keyword (no per-keyword calibration)",
    )
    bench.add_argument(
        "--write",
        action="store_true",
        help="with --tune: write the chosen setting under `events:` in the pipeline YAML",
    )
    bench.add_argument(
        "--why",
        action="store_true",
        help="offline replica of the benchmark's audio (no broker): a cause for every miss and false alarm",
    )
    bench.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    settings = args.load_settings()
    if args.tune:
        write = settings.pipeline_file if args.write else None
        return run_tune(
            settings,
            sys.stdout,
            args.tune_speech_minutes,
            args.tune_background_hours * 60,
            per_keyword=args.per_keyword,
            write=write,
        )
    if args.why:
        return run_why(
            settings, sys.stdout, args.speech_minutes, args.background_hours, args.snr_db, args.seed
        )
    run_bench(
        settings,
        sys.stdout,
        speech_minutes=args.speech_minutes,
        background_hours=args.background_hours,
        snr_db=args.snr_db,
        rate=args.rate,
        seed=args.seed,
    )
    return 0
