"""`ontime bench goodput`: on-time results per second, ontime against what a user would run instead.

One run on the real broker, contenders side by side (workers/tools/bench/contenders.py): ontime
split, ontime fused, a Quix Streams app and a plain confluent-kafka loop, the last two running
the same three models one frame at a time. For each contender, in every repeat:

1. capacity: a backlog of real frames (budget 60 s, so nothing is shed) drained by fresh
   processes; capacity = results/s between the 10th and 90th percentile of their arrival;
2. steady loads at fractions and multiples of *that contender's own* capacity, from the
   simulated fleet (real recordings, 24 devices), each followed until every frame it sent is
   accounted for; then a burst from idle: half a budget's worth of its work (capacity × budget/2
   frames) sent at once.

Repeats interleave the contenders (the order rotates), so a noisy stretch of the shared machine
does not land on one contender only; tables show medians over repeats. Row definitions are in
goodput_rows.py; how to read the output in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from workers.config.settings import OntimeSettings
from workers.tools.bench.contenders import (
    CONTENDERS,
    EXTRA_CONTENDERS,
    Contender,
    Running,
    default_quix_python,
)
from workers.tools.bench.deadlines import machine
from workers.tools.bench.goodput_report import (
    plot,
    render_capacity,
    render_late,
    render_loads,
    render_ratios,
    render_stage_times,
)
from workers.tools.bench.goodput_rows import BURST, CAPACITY, Row, medians
from workers.tools.bench.harness import (
    BenchError,
    Collector,
    backlog_rate,
    broker,
    create_topics,
    delete_topics,
    private_pipeline,
)
from workers.tools.bench.usage import cpu_stall_us, peak_rss_mb, total_cpu_ms
from workers.tools.devices import Fleet, LabelledClip, load_clips

LOADS = (0.25, 0.5, 0.8, 1.0, 2.0, 4.0)
BACKLOG_BUDGET_MS = 60_000  # long enough that nothing of a capacity backlog is shed
IDLE_S = 1.0  # between rows, so each starts from an idle pipeline


@dataclass(frozen=True)
class Plan:
    """What one run measures; `QUICK` is the smoke test, `FULL` the recorded run."""

    loads: tuple[float, ...] = LOADS
    seconds: float = 10.0
    backlog: int = 3000
    repeats: int = 3
    burst: bool = True
    devices: int = 24
    contenders: tuple[str, ...] = tuple(CONTENDERS)
    quix_python: Path = field(default_factory=default_quix_python)


FULL = Plan()
QUICK = Plan(seconds=2.0, backlog=400, repeats=1)


@dataclass
class Outcome:
    rows: list[Row]
    report: str
    files: list[Path]


@contextmanager
def _session(
    contender: Contender, settings: OntimeSettings, run_dir: Path, plan: Plan
) -> Iterator[tuple[Running, Collector]]:
    """Private topics, a collector on them and the contender's processes (not started yet)."""
    create_topics(settings)
    collector = Collector(settings)
    running = contender.launch(settings, run_dir, plan.quix_python)
    try:
        collector.start()
        yield running, collector
    finally:
        running.stop()
        collector.stop()
        delete_topics(settings)


def _wait_drained(collector: Collector, target: int, timeout_s: float, check: Callable[[], None]) -> bool:
    """Until `target` frames are accounted for; False if that did not happen in time."""
    give_up = time.monotonic() + timeout_s
    while collector.frames < target:
        check()
        if time.monotonic() > give_up:
            return False
        time.sleep(0.1)  # waiting on the collector thread
    return True


def _drain_timeout(sent: int, capacity: float) -> float:
    """Generous: a peer without shedding works off everything it was offered beyond capacity."""
    return 30.0 + 3.0 * sent / max(capacity, 1.0)


class Stall:
    """CPU pressure (PSI `some`) over a stretch of wall time, as a percentage."""

    def __init__(self) -> None:
        self.us0, self.t0 = cpu_stall_us(), time.monotonic()

    def pct(self) -> float:
        us1, wall_us = cpu_stall_us(), (time.monotonic() - self.t0) * 1e6
        if self.us0 is None or us1 is None or wall_us <= 0:
            return math.nan
        return 100.0 * (us1 - self.us0) / wall_us


def _finish(
    row: Row, running: Running, collector: Collector, first: int, cpu0: float, budget: float, stall: Stall
) -> Row:
    row.stall_pct = stall.pct()
    row.cpu_ms = total_cpu_ms(running.pids) - cpu0
    row.rss_mb = [peak_rss_mb(p) for p in running.pids]
    for seen in collector.log[first:]:
        row.add(seen, budget)
    return row


def measure_capacity(
    contender: Contender,
    base: OntimeSettings,
    bootstrap: str,
    run_dir: Path,
    clips: list[LabelledClip],
    plan: Plan,
) -> Row:
    """Fresh processes drain a pre-produced backlog; capacity from the middle 80 % of results."""
    settings = private_pipeline(base, bootstrap, "gpcap", budget_ms=BACKLOG_BUDGET_MS)
    with _session(contender, settings, run_dir, plan) as (running, collector):
        report = Fleet(settings, 8, 100_000.0, clips=clips).run(frames=plan.backlog)
        stall = Stall()
        running.start()
        cpu0 = total_cpu_ms(running.pids)
        drained = _wait_drained(collector, report.sent, 180.0 + report.sent / 20.0, running.check_alive)
        arrivals = [s.appended_ms or s.received_ms for s in collector.log if s.kind == "result"]
        if len(arrivals) < 10:
            raise BenchError(
                f"{contender.name}: only {len(arrivals)} results of a {report.sent}-frame backlog"
            )
        capacity = backlog_rate(arrivals)
        row = Row(contender.name, CAPACITY, 0.0, capacity, sent=report.sent, drained=drained)
        row.elapsed_s = report.sent / capacity
        _finish(row, running, collector, 0, cpu0, BACKLOG_BUDGET_MS, stall)
        row.on_time = row.results  # per result: the cost of work with no deadline pressure
        return row


def run_loads(
    contender: Contender,
    capacity: float,
    base: OntimeSettings,
    bootstrap: str,
    run_dir: Path,
    clips: list[LabelledClip],
    plan: Plan,
    out: TextIO,
) -> list[Row]:
    """Steady loads at multiples of `capacity`, then the burst, on one set of processes."""
    settings = private_pipeline(base, bootstrap, "gp")
    budget = settings.pipeline.budget_ms
    rows: list[Row] = []
    with _session(contender, settings, run_dir, plan) as (running, collector):
        running.start()
        for factor in plan.loads:
            rate = factor * capacity
            row = Row(contender.name, f"{factor:g}×", factor, capacity)
            first, base_frames, cpu0 = len(collector.log), collector.frames, total_cpu_ms(running.pids)
            stall = Stall()
            fleet = Fleet(settings, plan.devices, rate / plan.devices, seed=int(factor * 100), clips=clips)
            report = fleet.run(duration_s=plan.seconds)
            row.sent, row.elapsed_s = report.sent, report.elapsed_s
            row.drained = _wait_drained(
                collector,
                base_frames + report.sent,
                _drain_timeout(report.sent, capacity),
                running.check_alive,
            )
            rows.append(_finish(row, running, collector, first, cpu0, budget, stall))
            out.write(
                f"  {row.load:>6} {row.offered:7.0f}/s offered → {row.goodput:7.0f}/s on time"
                f" (CPU pressure {row.stall_pct:.0f} %)\n"
            )
            out.flush()
            time.sleep(IDLE_S)
        if plan.burst:
            frames = max(1, round(capacity * budget / 2000.0))
            row = Row(contender.name, BURST, 0.0, capacity)
            time.sleep(IDLE_S)
            first, base_frames, cpu0 = len(collector.log), collector.frames, total_cpu_ms(running.pids)
            stall = Stall()
            fleet = Fleet(settings, min(plan.devices, frames), 1e6, clips=clips)
            report = fleet.run(frames=frames)
            row.sent, row.elapsed_s = report.sent, report.elapsed_s
            row.drained = _wait_drained(
                collector,
                base_frames + report.sent,
                _drain_timeout(report.sent, capacity),
                running.check_alive,
            )
            rows.append(_finish(row, running, collector, first, cpu0, budget, stall))
            out.write(f"  burst {frames} frames at once → {row.on_time} on time\n")
    return rows


def run_goodput(settings: OntimeSettings, out: TextIO, plan: Plan, out_dir: Path | None = None) -> Outcome:
    """Every contender, every repeat (interleaved); prints progress, returns rows, tables, files."""
    known = {**CONTENDERS, **EXTRA_CONTENDERS}
    unknown = [c for c in plan.contenders if c not in known]
    if unknown:
        raise BenchError(f"unknown contenders {unknown}; choose from {list(known)}")
    clips = load_clips(settings.pipeline)
    spec = settings.pipeline
    out.write(f"machine: {machine()}\n")
    out.write(
        f"pipeline {spec.name}: budget {spec.budget_ms:g} ms, {spec.topics.partitions} partitions; "
        f"backlog {plan.backlog} frames, loads {', '.join(f'{x:g}×' for x in plan.loads)} of each "
        f"contender's own capacity for {plan.seconds:g} s each, {plan.repeats} repeat(s)\n"
    )
    rows: list[Row] = []
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="ontime-goodput-") as tmp:
        run_dir = Path(tmp)
        for repeat in range(plan.repeats):
            order = (
                plan.contenders[repeat % len(plan.contenders) :]
                + plan.contenders[: repeat % len(plan.contenders)]
            )
            for name in order:
                contender = known[name]
                out.write(f"repeat {repeat + 1}/{plan.repeats}: {name}\n")
                out.flush()
                cap = measure_capacity(contender, settings, bootstrap, run_dir, clips, plan)
                out.write(f"  capacity {cap.capacity:.0f} frames/s (CPU pressure {cap.stall_pct:.0f} %)\n")
                rows.append(cap)
                rows.extend(
                    run_loads(contender, cap.capacity, settings, bootstrap, run_dir, clips, plan, out)
                )
    cells = medians(rows)
    report = "\n\n".join(
        [
            f"capacity (median of {plan.repeats}):\n\n" + render_capacity(cells),
            "loads (× each contender's own capacity; medians):\n\n" + render_loads(cells),
            render_ratios(cells),
            render_late(rows),
            render_stage_times(rows),
        ]
    )
    out.write("\n" + report + "\n")
    files: list[Path] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.md").write_text(report + "\n")
        (out_dir / "rows.json").write_text(json.dumps([r.as_json() for r in rows], indent=1) + "\n")
        files += [out_dir / "report.md", out_dir / "rows.json", plot(cells, out_dir / "goodput.png")]
        out.write("wrote " + ", ".join(str(f) for f in files) + "\n")
    return Outcome(rows, report, files)


def register_cli(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "goodput",
        help="on-time results/s of ontime split, fused, Quix Streams and a plain loop, side by side",
    )
    bench.add_argument("--quick", action="store_true", help="smoke test: about 2 minutes, one repeat")
    bench.add_argument("--repeats", type=int, default=None, help="interleaved repeats (full 3, quick 1)")
    bench.add_argument("--seconds", type=float, default=None, help="sending time per load (full 10, quick 2)")
    bench.add_argument("--backlog", type=int, default=None, help="frames of the capacity backlog")
    bench.add_argument("--loads", default=None, help="load factors, e.g. 0.25,0.5,1,2")
    bench.add_argument("--no-burst", action="store_true", help="skip the burst from idle")
    bench.add_argument(
        "--contenders", default=None, help=f"subset of: {', '.join([*CONTENDERS, *EXTRA_CONTENDERS])}"
    )
    bench.add_argument("--quix-python", type=Path, default=None, help="interpreter with quixstreams")
    bench.add_argument(
        "--out", type=Path, default=None, help="directory for report.md, rows.json, goodput.png"
    )
    bench.set_defaults(func=_cmd)


def plan_from_args(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.repeats is not None:
        changes["repeats"] = args.repeats
    if args.seconds is not None:
        changes["seconds"] = args.seconds
    if args.backlog is not None:
        changes["backlog"] = args.backlog
    if args.loads is not None:
        changes["loads"] = tuple(float(x) for x in args.loads.split(",") if x.strip())
    if args.no_burst:
        changes["burst"] = False
    if args.contenders is not None:
        changes["contenders"] = tuple(c.strip() for c in args.contenders.split(",") if c.strip())
    if args.quix_python is not None:
        changes["quix_python"] = args.quix_python
    return replace(plan, **changes)


def _cmd(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    out_dir = args.out
    if out_dir is None:
        out_dir = Path(".ontime") / f"bench-goodput-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        out_dir.mkdir(parents=True, exist_ok=True)
        # Run files are scratch: keep them out of git without touching the repo's .gitignore.
        (out_dir.parent / ".gitignore").write_text("*\n")
    run_goodput(args.load_settings(), sys.stdout, plan, out_dir)
    return 0
