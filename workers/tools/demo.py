"""`ontime demo`: the whole pipeline on one machine, watched live, ending with a summary.

In order: find or start a broker → check the models → recreate the pipeline's topics (a fresh
run, default names) → start preprocess, infer and postprocess as separate worker processes →
wait until each holds partitions → run the simulated fleet while a reader tallies every
result / late / dlq record into a live view → wait until every sent frame is accounted for →
stop the workers with SIGTERM → print the summary and write the run's files. Everything the
demo starts, it stops, including on ^C or an error; the broker only if the demo started it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import KafkaError, KafkaException

from workers.aggregate.names import STAGE, changelog_topic
from workers.config.settings import BOOTSTRAP_ENV, OntimeSettings, load_settings
from workers.config.spec import STAGE_ORDER
from workers.errors import BrokerError, OntimeError
from workers.kafka.groups import group_members, wait_assigned
from workers.kafka.topics import admin_client, create_topics, delete, delete_topics
from workers.localkafka.find import FoundBroker, find_or_start
from workers.messages import headers as h
from workers.stages.model import check_models
from workers.tools.demo_events import PARTIAL, StreamedRun, run_stream, spawn_aggregator
from workers.tools.devices import Fleet, LabelledClip, SendReport, load_clips
from workers.tools.liveview import LiveView, ResultsReader, Tally, results_jsonl
from workers.tools.processes import spawn_worker
from workers.tools.stats import Summary

__all__ = ["DemoError", "DemoOptions", "DemoOutcome", "register_cli", "run_demo"]


class DemoError(OntimeError):
    """The demo cannot go on; the message says what is wrong and where to look."""


@dataclass
class DemoOptions:
    """The knobs of one demo run (the CLI flags)."""

    devices: int = 8
    rate: float = 2.0
    duration_s: float = 30.0
    seed: int = 0
    keep_broker: bool = False
    run_dir: Path | None = None
    ready_timeout_s: float = 120.0
    drain_timeout_s: float = 30.0
    window_s: float = 10.0
    live: bool | None = None  # None: redraw in place only when stdout is a terminal
    stream: bool = False  # streaming devices + `ontime aggregate`: keyword events (demo_events.py)
    hop_ms: int | None = None  # None: the pipeline's events.hop_ms (what the detector is tuned for)
    worker_flags: list[str] = field(default_factory=list)  # global CLI flags the workers get too


@dataclass
class DemoOutcome:
    """What a run measured; `ok` is what the exit code says."""

    run_dir: Path
    sent: int = 0
    delivered: int = 0
    results: int = 0
    late: int = 0
    dlq: int = 0
    correct: int = 0
    scored: int = 0
    worker_exits: dict[str, int | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    events: StreamedRun | None = None  # with --stream: ground truth, events and their score

    @property
    def accounted(self) -> int:
        return self.results + self.late + self.dlq

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None

    @property
    def ok(self) -> bool:
        return not self.problems


# -- broker -------------------------------------------------------------------------------------
def _find_or_start_broker(out: TextIO) -> FoundBroker:
    try:
        return find_or_start(announce=lambda text: _say(out, text))
    except BrokerError as exc:  # JarFetchError too
        raise DemoError(f"could not start a local Kafka broker: {exc}") from None


# -- models and topics -------------------------------------------------------------------------
def _check_models(settings: OntimeSettings) -> list[str]:
    """Every model the pipeline serves, verified against its card before any process is started."""
    checks = check_models(settings.pipeline, settings.models_dir)
    failed = [f"{c.stage} {c.role}: {c.detail}" for c in checks if not c.ok]
    if failed:
        raise DemoError("\n".join(failed) + "\n  build the models first (see README: `ontime models build`)")
    return [f"{c.stage}={c.card.name if c.card else c.ref}" for c in checks if c.role == "primary"]


_COORDINATOR_MOVING = (
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
)


def _forget_groups(admin: Any, groups: list[str], deadline: float) -> None:
    """Delete the stages' groups, so no committed offset of an earlier run survives. A broker that
    just started is still loading its offsets (COORDINATOR_LOAD_IN_PROGRESS): the delete is retried
    until it answers; a group that never existed is fine."""
    pending = list(groups)
    while pending:
        retry = []
        for group, future in admin.delete_consumer_groups(pending, request_timeout=10).items():
            try:
                future.result()
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                if not (err.retriable() or err.code() in _COORDINATOR_MOVING) or time.monotonic() > deadline:
                    raise DemoError(f"could not reset consumer group {group}: {err.str()}") from None
                retry.append(group)
        pending = retry
        if pending:
            time.sleep(0.5)  # the coordinator is loading: ask again


def _fresh_topics(settings: OntimeSettings, out: TextIO, timeout: float = 60.0) -> None:
    """Delete and recreate the pipeline's topics and forget the stages' offsets: no old frame mixes in."""
    admin = admin_client(settings.kafka, "ontime-demo", quiet=True)
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:  # KafkaException: say which cluster and what to do, at once
        raise DemoError(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers} ({exc}); start one with "
            f"`ontime broker up`, or unset {BOOTSTRAP_ENV} to let the demo start one"
        ) from None
    groups = [settings.pipeline.group_id(s) for s in (*STAGE_ORDER, STAGE)]
    deadline = time.monotonic() + timeout
    while busy := {g: len(m) for g, m in group_members(admin, groups).items() if m}:
        if time.monotonic() > deadline:
            raise DemoError(
                f"stage workers of this pipeline are already running ({busy}); stop them first "
                "(the demo starts its own)"
            )
        time.sleep(1.0)  # a worker that just left may still be listed until its session ends
    delete_topics(settings, timeout)
    delete(admin, [changelog_topic(settings)], timeout)  # the aggregator's state of an earlier run
    _forget_groups(admin, groups, deadline)
    create_topics(settings)
    topics = settings.pipeline.topics
    _say(out, f"topics: {', '.join(topics.all())} ({topics.partitions} partitions each, fresh)")


# -- workers -----------------------------------------------------------------------------------
@dataclass
class _Worker:
    stage: str
    proc: subprocess.Popen[bytes]
    log: Path
    spawned: float = field(default_factory=time.monotonic)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _start_workers(
    settings: OntimeSettings, bootstrap: str, run_dir: Path, flags: list[str], aggregate: bool = False
) -> list[_Worker]:
    pipeline = str(settings.pipeline_file) if settings.pipeline_file else settings.pipeline.name
    workers = []
    for stage in STAGE_ORDER:
        log = run_dir / f"{stage}.log"
        proc = spawn_worker(stage, pipeline, bootstrap, log, flags)
        workers.append(_Worker(stage, proc, log))
    if aggregate:
        log = run_dir / f"{STAGE}.log"
        workers.append(_Worker(STAGE, spawn_aggregator(pipeline, bootstrap, log, flags), log))
    return workers


def _wait_ready(settings: OntimeSettings, workers: list[_Worker], timeout: float, out: TextIO) -> None:
    """Until each stage's group has a member holding partitions; a dead worker fails at once."""
    by_group = {settings.pipeline.group_id(w.stage): w for w in workers}

    def check_alive() -> None:
        for w in workers:
            code = w.proc.poll()
            if code is not None:
                raise DemoError(
                    f"worker {w.stage} exited with code {code}; last lines of {w.log}:\n{w.tail()}"
                )

    def assigned(group: str, held: int) -> None:
        w = by_group[group]
        waited = time.monotonic() - w.spawned
        _say(out, f"  {w.stage:<12} ready in {waited:4.1f} s  (pid {w.proc.pid}, {held} partitions)")

    admin = admin_client(settings.kafka, "ontime-demo", quiet=True)
    pending = wait_assigned(admin, list(by_group), timeout, check_alive, assigned)
    if pending:
        late = [by_group[g] for g in sorted(pending)]
        tails = "\n".join(f"  {w.stage} ({w.log}):\n{w.tail()}" for w in late)
        names = ", ".join(w.stage for w in late)
        raise DemoError(f"stages {names} not ready after {timeout:.0f} s; worker logs:\n{tails}")


def _stop_workers(workers: list[_Worker], timeout: float = 30.0) -> dict[str, int | None]:
    """SIGTERM (graceful: finish the batch, commit, leave the group), SIGKILL only if that fails."""
    for w in workers:
        if w.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
    exits: dict[str, int | None] = {}
    for w in workers:
        try:
            exits[w.stage] = w.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(timeout=10)
            exits[w.stage] = None  # did not exit on SIGTERM
    return exits


# -- the run -----------------------------------------------------------------------------------
def run_demo(
    options: DemoOptions,
    settings: OntimeSettings | None = None,
    bootstrap: str | None = None,
    out: TextIO = sys.stdout,
) -> DemoOutcome:
    """Run the demo end to end; never leaves a process behind. Problems are in `outcome.problems`."""
    settings = settings or load_settings()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = options.run_dir or Path(".ontime") / f"demo-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if options.run_dir is None:
        # The run files are scratch: keep them out of git without touching the repo's .gitignore.
        (run_dir.parent / ".gitignore").write_text("*\n")
    outcome = DemoOutcome(run_dir)
    broker = FoundBroker(bootstrap, None, "given by the caller") if bootstrap else _find_or_start_broker(out)
    _say(out, f"broker: {broker.bootstrap} — {broker.where}")
    settings = _with_bootstrap(settings, broker.bootstrap)
    workers: list[_Worker] = []
    try:
        _say(out, f"models: {', '.join(_check_models(settings))}")
        _fresh_topics(settings, out)
        workers = _start_workers(settings, broker.bootstrap, run_dir, options.worker_flags, options.stream)
        _say(out, f"workers: {', '.join(w.stage for w in workers)} as separate processes, logs in {run_dir}/")
        clips = load_clips(settings.pipeline)
        _wait_ready(settings, workers, options.ready_timeout_s, out)
        if options.stream:
            report, tally, streamed = _run_stream(settings, options, workers, out)
            outcome.events = streamed
        else:
            report, tally = _run_fleet(settings, options, clips, workers, out)
        outcome.sent, outcome.delivered = report.sent, report.delivered
    except KeyboardInterrupt:
        outcome.problems.append("interrupted")
        return outcome
    except OntimeError as exc:
        where = f"Kafka at {broker.bootstrap}: " if isinstance(exc, BrokerError) else ""
        outcome.problems.append(f"{where}{exc}")
        return outcome
    except Exception as exc:  # a clear line and a non-zero exit, never a bare traceback
        trace = run_dir / "error.txt"
        trace.write_text(traceback.format_exc())
        outcome.problems.append(f"unexpected {type(exc).__name__}: {exc} (traceback in {trace})")
        return outcome
    finally:
        if workers:
            outcome.worker_exits = _stop_workers(workers)
        if broker.started is not None and not options.keep_broker:
            broker.started.stop()
        elif broker.started is not None:
            _say(out, f"broker left running at {broker.bootstrap} (`ontime broker down` stops it)")
    _score(outcome, report, tally)
    _check(outcome, workers)
    _say(out, "")
    _say(out, _summary(settings, options, report, tally, outcome, broker))
    outcome.files = _write_files(run_dir, report, tally, out)
    if outcome.events is not None:
        outcome.files += outcome.events.write(run_dir)
    outcome.files += _write_report(tally, run_dir, out)
    return outcome


def _with_bootstrap(settings: OntimeSettings, bootstrap: str) -> OntimeSettings:
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    return settings.model_copy(update={"kafka": kafka})


def _run_fleet(
    settings: OntimeSettings,
    options: DemoOptions,
    clips: list[LabelledClip],
    workers: list[_Worker],
    out: TextIO,
) -> tuple[SendReport, Tally]:
    """Fleet in a thread, live view in this one, then drain until every frame is accounted for."""
    tally = Tally(window_s=options.window_s)
    reader = ResultsReader(settings, tally)
    reader.start()
    fleet = Fleet(settings, options.devices, options.rate, options.seed, clips=clips)
    view = LiveView(out, settings.pipeline.budget_ms, tty=options.live)
    reports: list[SendReport] = []
    failure: list[BaseException] = []

    def send() -> None:
        try:
            reports.append(fleet.run(duration_s=options.duration_s))
        except BaseException as exc:  # handed to the main thread, which reports it
            failure.append(exc)

    thread = threading.Thread(target=send, name="ontime-fleet", daemon=True)
    _say(
        out,
        f"fleet: {options.devices} devices × {options.rate:g} frames/s for {options.duration_s:g} s "
        f"({len(clips)} real labelled frames)\n",
    )
    thread.start()
    try:
        while thread.is_alive():
            _check_alive(workers)
            view.show(tally.snapshot(fleet.sent), "sending")
            thread.join(timeout=1.0)
        if failure:
            raise DemoError(f"the device fleet failed: {failure[0]!r}")
        report = reports[0]
        drain_until = time.monotonic() + options.drain_timeout_s
        while tally.ended(report.frames) < report.sent and time.monotonic() < drain_until:
            _check_alive(workers)
            view.show(tally.snapshot(report.sent), "draining")
            time.sleep(min(1.0, max(0.0, drain_until - time.monotonic())))  # the reader fills the tally
        view.show(tally.snapshot(report.sent), "done")
    finally:
        fleet.stop()
        thread.join(timeout=30)
        view.close()
        reader.stop()
    if reader.error:
        raise DemoError(f"results reader failed: {reader.error}")
    return report, tally


def _run_stream(
    settings: OntimeSettings, options: DemoOptions, workers: list[_Worker], out: TextIO
) -> tuple[SendReport, Tally, StreamedRun]:
    """Streaming devices in real time, results and events watched live (workers/tools/demo_events.py)."""
    tally = Tally(window_s=options.window_s)
    reader = ResultsReader(settings, tally)
    reader.start()
    view = LiveView(out, settings.pipeline.budget_ms, tty=options.live)
    try:
        return run_stream(
            settings,
            devices=options.devices,
            seconds=options.duration_s,
            hop_ms=options.hop_ms or settings.pipeline.events.hop_ms,
            seed=options.seed,
            tally=tally,
            view=view,
            check=lambda: _check_alive(workers),
            drain_timeout_s=options.drain_timeout_s,
            out=out,
        )
    finally:
        view.close()
        reader.stop()


def _check_alive(workers: list[_Worker]) -> None:
    for w in workers:
        code = w.proc.poll()
        if code is not None:
            raise DemoError(f"worker {w.stage} died (exit {code}); last lines of {w.log}:\n{w.tail()}")


def _score(outcome: DemoOutcome, report: SendReport, tally: Tally) -> None:
    outcome.results = sum(1 for i in report.frames if _kind(tally, i) == "result")
    outcome.late = sum(1 for i in report.frames if _kind(tally, i) == "late")
    outcome.dlq = sum(1 for i in report.frames if _kind(tally, i) == "dlq")
    for result in tally.results:
        frame = report.frames.get(result.id)
        if frame is not None and frame.label != PARTIAL:
            outcome.scored += 1
            outcome.correct += int(result.label == frame.label)


def _kind(tally: Tally, frame_id: str) -> str | None:
    found = tally.outcomes.get(frame_id)
    return found.kind if found else None


def _check(outcome: DemoOutcome, workers: list[_Worker]) -> None:
    if outcome.sent == 0:
        outcome.problems.append("the fleet sent no frames")
    if outcome.delivered < outcome.sent:
        outcome.problems.append(
            f"only {outcome.delivered} of {outcome.sent} frames were acknowledged by Kafka"
        )
    if outcome.results == 0:
        logs = ", ".join(str(w.log) for w in workers)
        ended = f" ({outcome.late} went late, {outcome.dlq} to the dlq)" if outcome.accounted else ""
        outcome.problems.append(f"no results came back{ended}; see the worker logs: {logs}")
    if outcome.accounted < outcome.sent:
        missing = outcome.sent - outcome.accounted
        outcome.problems.append(f"{missing} of {outcome.sent} frames have no result, late or dlq record")
    for stage, code in outcome.worker_exits.items():
        if code != 0:
            how = "did not stop on SIGTERM (killed)" if code is None else f"exited with code {code}"
            outcome.problems.append(f"worker {stage} {how}")


# -- output ------------------------------------------------------------------------------------
def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def _pct(n: int, d: int) -> str:
    return f"{n / d:6.1%}" if d else "     -"


def _row(name: str, s: Summary, budget: float | None = None) -> str:
    cells = "".join(f"{s.cell(q):>9}" for q in ("p50", "p95", "p99", "max"))
    limit = "" if budget is None else f"{budget:.1f}"
    return f"  {name:<22}{cells}{limit:>9}{s.count:>8}"


def _summary(
    settings: OntimeSettings,
    options: DemoOptions,
    report: SendReport,
    tally: Tally,
    outcome: DemoOutcome,
    broker: FoundBroker,
) -> str:
    spec = settings.pipeline
    e2e, stages = tally.run_summary()
    labels = Counter(f.label for f in report.frames.values())
    by_group = _accuracy_by_group(report, tally)
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(tally.statuses.items())) or "-"
    late_why = _reasons(tally, "late")
    dlq_why = _reasons(tally, "dlq")
    lines = [
        f"SUMMARY  {spec.name}: {options.devices} devices × {options.rate:g} frames/s × "
        f"{options.duration_s:g} s, broker {broker.bootstrap}",
        f"  frames sent        {outcome.sent:>7}   ({report.achieved_rate:.1f}/s, "
        f"delivered {report.delivered}, failed {report.failed})",
        f"  results            {outcome.results:>7}   ({statuses})",
        f"  late               {outcome.late:>7}" + (f"   ({late_why})" if late_why else ""),
        f"  dlq                {outcome.dlq:>7}" + (f"   ({dlq_why})" if dlq_why else ""),
        f"  accounted for      {outcome.accounted:>7} / {outcome.sent}"
        + (f"   ({tally.duplicates} duplicate records ignored)" if tally.duplicates else ""),
        f"  accuracy           {_pct(outcome.correct, outcome.scored)}   ({outcome.correct}/{outcome.scored} "
        f"results right; {report.clips} real labelled frames, {len(labels)} classes sent)",
    ]
    for group, (right, scored) in by_group.items():
        lines.append(f"    {group:<17}{_pct(right, scored)}   ({right}/{scored})")
    accepted, unknown = _false_accepts(report, tally)
    if unknown:
        lines.append(
            f"  false accepts      {_pct(accepted, unknown)}   ({accepted}/{unknown} frames of words "
            "that are no keyword answered as a keyword)"
        )
    if outcome.events is not None:
        lines.append(
            "    (streamed windows: a keyword wholly inside, or no word at all; partial ones unscored)"
        )
        lines += outcome.events.summary()
    lines += [
        "",
        f"  {'latency ms':<22}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'budget':>9}{'count':>8}",
        _row("end-to-end", e2e, spec.budget_ms),
    ]
    for stage in STAGE_ORDER:
        queue, compute, total = stages[stage]
        lines.append(_row(f"{stage} queue", queue))
        lines.append(_row(f"{stage} compute", compute))
        lines.append(_row(f"{stage} total", total, spec.stage_budget_ms(stage)))
    lines.append(
        f"  (end-to-end = completed_ms − captured_ms of each result; stage times from its {h.STAGE_MS})"
    )
    lines.append("")
    if outcome.problems:
        lines.append("PROBLEMS")
        lines += [f"  - {p}" for p in outcome.problems]
    else:
        lines.append("OK: every frame sent is accounted for; workers stopped cleanly.")
    return "\n".join(lines)


def _accuracy_by_group(report: SendReport, tally: Tally) -> dict[str, tuple[int, int]]:
    """(right, scored) per group: `_x_` labels (unknown, background) apart, every other label
    together as the pipeline's named classes; empty when there is only that one group."""
    hits: dict[str, list[int]] = {}
    for result in tally.results:
        frame = report.frames.get(result.id)
        if frame is None or frame.label == PARTIAL:
            continue
        group = frame.label if frame.label.startswith("_") else "named classes"
        counts = hits.setdefault(group, [0, 0])
        counts[0] += int(result.label == frame.label)
        counts[1] += 1
    if len(hits) < 2:
        return {}
    return {g: (r, n) for g, (r, n) in sorted(hits.items(), key=lambda kv: kv[0].startswith("_"))}


def _false_accepts(report: SendReport, tally: Tally) -> tuple[int, int]:
    """(answered with a named class, scored) over the frames whose true label is `_unknown_`:
    words that are not keywords, which an open-set spotter must not take for one."""
    accepted = scored = 0
    for result in tally.results:
        frame = report.frames.get(result.id)
        if frame is None or frame.label != "_unknown_":
            continue
        scored += 1
        accepted += int(not result.label.startswith("_"))
    return accepted, scored


def _reasons(tally: Tally, kind: str) -> str:
    """`stage:reason ×count` of the most common reasons frames of `kind` ended so."""
    found = [(k.split(":", 1)[1], n) for k, n in tally.reasons.most_common() if k.startswith(kind + ":")]
    return ", ".join(f"{why} ×{n}" for why, n in found[:4])


def _write_files(run_dir: Path, report: SendReport, tally: Tally, out: TextIO) -> list[Path]:
    results = run_dir / "results.jsonl"
    results.write_text(results_jsonl(tally.results))
    labels = run_dir / "labels.jsonl"
    report.write_labels(labels)
    others = run_dir / "late-dlq.jsonl"
    with others.open("w") as sink:
        for o in tally.outcomes.values():
            if o.kind != "result":
                sink.write(
                    json.dumps({"id": o.id, "kind": o.kind, "stage": o.stage, "reason": o.reason}) + "\n"
                )
    _say(out, f"\nrun files: {run_dir}/ (results.jsonl, labels.jsonl, late-dlq.jsonl, <stage>.log)")
    return [results, labels, others]


def _write_report(tally: Tally, run_dir: Path, out: TextIO) -> list[Path]:
    """The budget report (workers/tools/report.py: write_report(results, out_dir)), when it exists."""
    try:
        report = importlib.import_module("workers.tools.report")
    except ModuleNotFoundError:
        return []
    write = getattr(report, "write_report", None)
    if write is None or not tally.results:
        return []
    try:
        paths = [Path(p) for p in write(tally.results, run_dir)]
    except Exception as exc:  # the summary is already out; a broken report must not hide it
        _say(out, f"budget report failed: {exc!r}")
        return []
    for path in paths:
        _say(out, f"budget report: {path}")
    return paths


# -- CLI -----------------------------------------------------------------------------------------
def register_cli(subparsers: Any) -> None:
    """`ontime demo`."""
    demo = subparsers.add_parser("demo", help="broker, topics, three stage workers, a fleet, a live view")
    demo.add_argument("--pipeline", dest="verb_pipeline", default=None, help="pipeline name or YAML path")
    demo.add_argument("--devices", type=int, default=8, help="simulated devices (default 8)")
    demo.add_argument("--rate", type=float, default=2.0, help="frames per second per device (default 2)")
    demo.add_argument("--duration", type=float, default=30.0, help="seconds the fleet sends (default 30)")
    demo.add_argument("--seed", type=int, default=0, help="fixes the order of the clips")
    demo.add_argument("--keep-broker", action="store_true", help="leave a broker the demo started running")
    demo.add_argument("--run-dir", type=Path, default=None, help="default .ontime/demo-<UTC time>")
    demo.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for the workers")
    demo.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to wait for the last results"
    )
    demo.add_argument(
        "--stream", action="store_true", help="streaming devices with keywords + `ontime aggregate`: events"
    )
    demo.add_argument(
        "--hop-ms",
        type=int,
        default=None,
        help="with --stream: ms between frames (default: the pipeline's events.hop_ms)",
    )
    view = demo.add_mutually_exclusive_group()
    view.add_argument("--live", dest="live", action="store_true", default=None, help="redraw in place")
    view.add_argument("--no-live", dest="live", action="store_false", help="one line every few seconds")
    demo.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    pipeline = getattr(args, "verb_pipeline", None) or getattr(args, "pipeline", None)
    loader = getattr(args, "load_settings", None)
    settings = loader(pipeline) if callable(loader) else load_settings(pipeline)
    if args.devices < 1 or args.rate <= 0 or args.duration <= 0:
        print("demo: --devices, --rate and --duration must be positive", file=sys.stderr)
        return 2
    options = DemoOptions(
        devices=args.devices,
        rate=1000.0 / (args.hop_ms or settings.pipeline.events.hop_ms) if args.stream else args.rate,
        duration_s=args.duration,
        seed=args.seed,
        keep_broker=args.keep_broker,
        run_dir=args.run_dir,
        ready_timeout_s=args.ready_timeout,
        drain_timeout_s=args.drain_timeout,
        live=args.live,
        stream=args.stream,
        hop_ms=args.hop_ms,
        # `ontime --set k=v demo` must mean the same settings for the workers as for the demo.
        worker_flags=_worker_flags(args),
    )
    with _sigterm_as_interrupt():
        outcome = run_demo(options, settings)
    if outcome.ok:
        return 0
    if outcome.problems == ["interrupted"]:
        print("\ndemo interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    print("\ndemo FAILED:", file=sys.stderr)
    for problem in outcome.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def _worker_flags(args: argparse.Namespace) -> list[str]:
    """The global flags (`--set`, `--log-level`, `--log-json`) to hand on to each worker."""
    flags = [flag for item in getattr(args, "overrides", None) or [] for flag in ("--set", item)]
    if getattr(args, "log_level", None):
        flags += ["--log-level", args.log_level]
    if getattr(args, "log_json", False):
        flags.append("--log-json")
    return flags


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the same clean path as ^C: everything the demo started is stopped."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
