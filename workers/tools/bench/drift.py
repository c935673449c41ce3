"""`ontime bench drift`: what the drift window costs per frame, beside what the stage itself costs.

In one process, on real recordings: the preprocess and infer stages of the pipeline (real models,
as a chained worker builds them) process batches of held-out frames, and the drift monitor's
`computed` hook is timed on the same batches and outcomes. Repeats interleave stage and monitor,
so a noisy neighbour slows both alike; the table shows medians in microseconds per frame and the
monitor's share of the stage's cost.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Any, TextIO

import numpy as np
from prometheus_client import CollectorRegistry

from workers.config.settings import OntimeSettings
from workers.deadlines.costs import Line
from workers.messages.deadline import Deadline, now_ms
from workers.messages.envelope import Envelope, Source
from workers.messages.outcome import Outcome
from workers.stages.stage import Stage, build_stage
from workers.telemetry.drift import DriftMonitor
from workers.tools.devices import load_clips

STAGES = ("preprocess", "infer")


def _batch(settings: OntimeSettings, payloads: list[bytes]) -> list[Envelope]:
    now = now_ms()
    return [
        Envelope(
            id=f"b{i}",
            key=b"mic-bench",
            payload=p,
            content_type=settings.pipeline.frame.content_type,
            deadline=Deadline(now + 3_600_000),
            captured_ms=None,
            taken_ms=now,
            source=Source(settings.pipeline.topics.raw, 0, i, int(now)),
        )
        for i, p in enumerate(payloads)
    ]


def _timed_us(call: Any, frames: int, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1e6 / frames)
    return out


def run_bench(
    settings: OntimeSettings, out: TextIO, batches: tuple[int, ...], repeats: int, runs: int
) -> None:
    pipeline = settings.pipeline
    stages: list[Stage] = [build_stage(pipeline, s, models_dir=settings.models_dir) for s in STAGES]
    for built in stages:  # plenty of time: admission never sheds a benchmark frame
        built.costs["overhead"].set_prior(Line(0.0, 0.0))
    monitor = DriftMonitor(pipeline, list(STAGES), CollectorRegistry(), models_dir=settings.models_dir)
    payloads = [c.payload for c in load_clips(pipeline)]
    rows = []
    for n in batches:
        envs = {"preprocess": _batch(settings, [payloads[i % len(payloads)] for i in range(n)])}
        outcomes: dict[str, list[Outcome]] = {"preprocess": stages[0].process(envs["preprocess"])}
        envs["infer"] = [
            replace(o.envelope, taken_ms=now_ms()) for o in outcomes["preprocess"] if o.kind == "emit"
        ]
        outcomes["infer"] = stages[1].process(envs["infer"])
        stage_us: dict[str, list[float]] = {s: [] for s in STAGES}
        drift_us: dict[str, list[float]] = {s: [] for s in STAGES}
        for _ in range(repeats):
            for name, stage in zip(STAGES, stages, strict=True):
                stage_us[name] += _timed_us(lambda st=stage, e=envs[name]: st.process(e), n, runs)
                drift_us[name] += _timed_us(
                    lambda e=envs[name], o=outcomes[name]: monitor.computed(e, o, 0.0), n, runs
                )
        for name in STAGES:
            a, b = float(np.median(stage_us[name])), float(np.median(drift_us[name]))
            rows.append((name, n, a, b, b / a))
    out.write("| stage | batch | stage µs/frame | drift µs/frame | drift / stage |\n|---|---|---|---|---|\n")
    for s, n, a, b, r in rows:
        out.write(f"| {s} | {n} | {a:.1f} | {b:.1f} | {r:.1%} |\n")


def register_cli(subparsers: Any) -> None:
    bench = subparsers.add_parser("drift", help="drift window cost per frame against the stage's own cost")
    bench.add_argument("--batches", default="1,32", help="batch sizes, e.g. 1,32")
    bench.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median taken)")
    bench.add_argument("--runs", type=int, default=20, help="calls per repeat")
    bench.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    batches = tuple(int(b) for b in args.batches.split(",") if b.strip())
    run_bench(args.load_settings(), sys.stdout, batches, args.repeats, args.runs)
    return 0
