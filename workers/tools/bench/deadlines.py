"""`ontime bench deadlines`: does the pipeline answer on time when it is offered more than it can do?

1. Capacity: a backlog of frames (with a budget so long that nothing is shed) is run through the
   three stage processes; capacity is the rate at which results came out between the 10th and
   the 90th percentile of their arrival, so start-up and tail do not count.
2. Load: with the real budget, a simulated fleet offers 0.5×, 1×, 2×, 4× that capacity for a fixed
   time each. For every load the table shows what happened to the frames of that load only.

Definitions (docs/deadlines.md): *admitted* = frames that got through every stage's admission
(results, plus `missed` late records: computed but finished past the deadline); *on time* =
result completed by its deadline; *shed* = routed late before compute (`expired`,
`insufficient-budget`, and `skipped` ranges counted frame for frame); *lag* = records the stage
groups have not committed yet, summed over the three stages, at the middle and at the end of the
sending, and its trend (records/s, a line fitted to once-a-second samples over the second half).
Workers auto-commit stored offsets every second, so about one second of traffic is always "lag";
flat means the trend stays near zero. End-to-end latency is the broker's append time of the
result (P.results is created with LogAppendTime) minus the device's capture time.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from workers.config.settings import OntimeSettings
from workers.messages.reasons import EXPIRED, INSUFFICIENT_BUDGET, MISSED, SKIPPED
from workers.tools.bench.harness import (
    BenchError,
    Collector,
    LagProbe,
    Workers,
    backlog_rate,
    broker,
    create_topics,
    delete_topics,
    private_pipeline,
)
from workers.tools.devices import Fleet, LabelledClip, load_clips

DEFAULT_LOADS = (0.5, 1.0, 2.0, 4.0)


@dataclass
class Load:
    """What became of the frames offered at one load."""

    factor: float
    offered: float
    achieved: float = 0.0
    sent: int = 0
    results: int = 0
    on_time: int = 0
    delivered_by_deadline: int = 0
    degraded: int = 0
    late: Counter[str] = field(default_factory=Counter)
    shed_at: Counter[str] = field(default_factory=Counter)
    missed_at: Counter[str] = field(default_factory=Counter)
    dlq: int = 0
    unaccounted: int = 0
    e2e_ms: list[float] = field(default_factory=list)
    burn: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # stage → (queue, compute)
    lag_mid: dict[str, int] = field(default_factory=dict)
    lag_end: dict[str, int] = field(default_factory=dict)
    lag_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, total lag)

    @property
    def lag_trend(self) -> float:
        """Records per second the total lag grew by over the second half of the sending (≈ 0: flat)."""
        half = self.lag_samples[len(self.lag_samples) // 2 :]
        if len(half) < 2:
            return float("nan")
        t, lag = np.array(half, dtype=np.float64).T
        return float(np.polyfit(t, lag, 1)[0])

    @property
    def shed(self) -> int:
        return self.late[EXPIRED] + self.late[INSUFFICIENT_BUDGET] + self.late[SKIPPED]

    @property
    def admitted(self) -> int:
        return self.results + self.late[MISSED]


def measure_capacity(
    settings: OntimeSettings,
    bootstrap: str,
    run_dir: Path,
    clips: list[LabelledClip],
    frames: int,
    out: TextIO,
) -> float:
    """Frames per second the three stage processes sustain on a backlog that nothing sheds."""
    cap = private_pipeline(settings, bootstrap, "benchcap", budget_ms=60_000)
    create_topics(cap)
    collector = Collector(cap)
    workers = Workers(cap, run_dir)
    try:
        report = Fleet(cap, 8, 100_000.0, clips=clips).run(frames=frames)
        ids = set(report.frames)
        collector.start()
        workers.start()
        give_up = time.monotonic() + 180
        while collector.accounted(ids) < len(ids):
            workers.check_alive()
            if time.monotonic() > give_up:
                raise BenchError(f"capacity run: {collector.accounted(ids)}/{len(ids)} frames after 180 s")
            time.sleep(0.2)  # waiting on another thread's progress
        arrivals = [s.appended_ms or s.received_ms for i in ids if (s := collector.seen[i]).kind == "result"]
        if len(arrivals) < 20:
            raise BenchError(f"capacity run: only {len(arrivals)} results of {len(ids)} frames")
        capacity = backlog_rate(arrivals)
        out.write(
            f"capacity: {capacity:.0f} frames/s ({len(arrivals)} frames backlog, 10th–90th percentile)\n"
        )
        return capacity
    finally:
        workers.stop()
        collector.stop()
        delete_topics(cap)


def run_load(
    settings: OntimeSettings,
    factor: float,
    capacity: float,
    seconds: float,
    devices: int,
    clips: list[LabelledClip],
    collector: Collector,
    probe: LagProbe,
    workers: Workers,
    drain_s: float,
) -> Load:
    """Offer `factor` × capacity for `seconds`, then wait for its frames to be accounted for."""
    rate = factor * capacity
    load = Load(factor, rate)
    fleet = Fleet(settings, devices, rate / devices, clips=clips, seed=int(factor * 10))
    reports: list[Any] = []
    first, frames_before = len(collector.log), collector.frames
    sender = threading.Thread(target=lambda: reports.append(fleet.run(duration_s=seconds)), daemon=True)
    started = time.monotonic()
    sender.start()
    # Lag once a second while sending: its trend over the second half says whether it is flat.
    while sender.is_alive() and time.monotonic() - started < seconds * 4 + 60:
        sender.join(timeout=1.0)
        at = time.monotonic() - started
        lag = probe.lag()
        load.lag_samples.append((at, sum(lag.values())))
        if not load.lag_mid and at >= seconds / 2:
            load.lag_mid = lag
    load.lag_end = probe.lag()
    if not reports:
        raise BenchError(f"fleet at {factor}× did not finish")
    report = reports[0]
    ids = set(report.frames)
    load.sent, load.achieved = report.sent, report.achieved_rate
    give_up = time.monotonic() + drain_s
    # Frames are accounted by count: a skipped range comes back as one late record without ids.
    while collector.frames < frames_before + len(ids) and time.monotonic() < give_up:
        workers.check_alive()
        time.sleep(0.2)  # waiting on the collector thread
    for ranged in collector.log[first:]:
        if ranged.kind == "late" and ranged.count > 1:  # a skipped range: no record per frame
            load.late[ranged.reason] += ranged.count
            load.shed_at[ranged.stage] += ranged.count
            load.unaccounted -= ranged.count
    for i in ids:
        seen = collector.seen.get(i)
        if seen is None:
            load.unaccounted += 1
        elif seen.kind == "result":
            load.results += 1
            on_time = seen.completed_ms is not None and seen.deadline_ms is not None
            load.on_time += on_time and seen.completed_ms <= seen.deadline_ms  # type: ignore[operator]
            delivered = seen.appended_ms if seen.appended_ms is not None else seen.received_ms
            load.delivered_by_deadline += seen.deadline_ms is not None and delivered <= seen.deadline_ms
            load.degraded += seen.status == "degraded"
            if seen.captured_ms is not None:
                load.e2e_ms.append(delivered - seen.captured_ms)
            for stage, queue, compute in seen.stages:
                load.burn.setdefault(stage, []).append((queue, compute))
        elif seen.kind == "late":
            load.late[seen.reason] += 1
            if seen.reason != MISSED:
                load.shed_at[seen.stage] += 1
            else:
                load.missed_at[seen.stage] += 1
        else:
            load.dlq += 1
    return load


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.2f}" if d else "-"


def render(loads: list[Load]) -> str:
    head = (
        "| load | offered/s | sent | admitted | on time % | in P.results by deadline % | shed % | degraded % "
        "| missed | dlq | p50 ms | p99 ms | lag mid | lag end | lag trend /s |"
    )
    rule = "|" + "---|" * 15
    rows = [head, rule]
    for x in loads:
        p50, p99 = np.percentile(x.e2e_ms, [50, 99]) if x.e2e_ms else (float("nan"), float("nan"))
        rows.append(
            f"| {x.factor:g}× | {x.achieved:.0f} | {x.sent} | {x.admitted} | {_pct(x.on_time, x.admitted)} "
            f"| {_pct(x.delivered_by_deadline, x.results)} | {_pct(x.shed, x.sent)} "
            f"| {_pct(x.degraded, x.results)} | {x.late[MISSED]} | {x.dlq} | {p50:.1f} | {p99:.1f} "
            f"| {sum(x.lag_mid.values())} | {sum(x.lag_end.values())} | {x.lag_trend:+.0f} |"
        )
    lines = ["\n".join(rows), ""]
    for x in loads:
        where = ", ".join(f"{s}={n}" for s, n in sorted(x.shed_at.items())) or "none"
        lag = ", ".join(f"{s}={x.lag_mid.get(s, 0)}→{n}" for s, n in x.lag_end.items())
        extra = f"; UNACCOUNTED {x.unaccounted}" if x.unaccounted else ""
        burn = ", ".join(
            f"{s} {np.median([q for q, _ in v]):.1f}/{np.median([c for _, c in v]):.1f}"
            for s, v in x.burn.items()
        )
        lines.append(
            f"{x.factor:g}×: median queue/compute ms per stage: {burn or '-'}; "
            f"results {x.results}, late {dict(x.late)}, shed at {where}, missed at {dict(x.missed_at)}; "
            f"lag mid→end {lag}; sent = results + late + dlq: "
            f"{x.sent} = {x.results} + {sum(x.late.values())} + {x.dlq}{extra}"
        )
    return "\n".join(lines)


def machine() -> str:
    load1, load5, _ = os.getloadavg()
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, "
        f"load average {load1:.1f} / {load5:.1f} (1 / 5 min) at start"
    )


def run_bench(
    settings: OntimeSettings,
    out: TextIO,
    *,
    loads: tuple[float, ...] = DEFAULT_LOADS,
    seconds: float = 15.0,
    devices: int = 24,
    capacity: float | None = None,
    capacity_frames: int = 3000,
    drain_s: float = 30.0,
) -> list[Load]:
    clips = load_clips(settings.pipeline)
    out.write(f"machine: {machine()}\n")
    out.write(
        f"pipeline {settings.pipeline.name}: budget {settings.pipeline.budget_ms:g} ms, "
        f"{settings.pipeline.topics.partitions} partitions, one process per stage\n"
    )
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="ontime-bench-") as tmp:
        run_dir = Path(tmp)
        if capacity is None:
            capacity = measure_capacity(settings, bootstrap, run_dir, clips, capacity_frames, out)
        live = private_pipeline(settings, bootstrap, "bench")
        create_topics(live)
        collector = Collector(live)
        workers = Workers(live, run_dir)
        probe = LagProbe(live)
        results: list[Load] = []
        try:
            collector.start()
            workers.start()
            for factor in loads:
                out.write(f"load {factor:g}× = {factor * capacity:.0f} frames/s for {seconds:g} s …\n")
                out.flush()
                results.append(
                    run_load(
                        live, factor, capacity, seconds, devices, clips, collector, probe, workers, drain_s
                    )
                )
        finally:
            workers.stop()
            collector.stop()
            probe.close()
            delete_topics(live)
    out.write("\n" + render(results) + "\n")
    return results


def register_cli(subparsers: Any) -> None:
    bench = subparsers.add_parser("deadlines", help="on-time rate, shedding and lag at 0.5×–4× capacity")
    bench.add_argument("--loads", default=",".join(f"{x:g}" for x in DEFAULT_LOADS), help="load factors")
    bench.add_argument("--seconds", type=float, default=15.0, help="sending time per load")
    bench.add_argument("--devices", type=int, default=24, help="simulated devices (keys)")
    bench.add_argument("--capacity", type=float, default=None, help="frames/s; skip measuring it")
    bench.add_argument(
        "--capacity-frames", type=int, default=3000, help="backlog size for measuring capacity"
    )
    bench.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    import sys

    settings = args.load_settings()
    loads = tuple(float(x) for x in args.loads.split(",") if x.strip())
    run_bench(
        settings,
        sys.stdout,
        loads=loads,
        seconds=args.seconds,
        devices=args.devices,
        capacity=args.capacity,
        capacity_frames=args.capacity_frames,
    )
    return 0
