"""Tables and the picture of `ontime bench goodput`, from the medians of its rows."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from workers.tools.bench.goodput_rows import BURST, CAPACITY, Median, Row
from workers.tools.stats import summarize

REFERENCE = "quix"  # ratios are against what a Python user would pick instead


def _f(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _rss(values: Sequence[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values) or "-"


def render_capacity(cells: Sequence[Median]) -> str:
    """Capacity per contender (frames/s on a backlog), against the reference peer."""
    caps = [c for c in cells if c.load == CAPACITY]
    ref = next((c.capacity for c in caps if c.contender == REFERENCE), math.nan)
    rows = [
        f"| contender | capacity frames/s | × {REFERENCE} | CPU ms / result | peak RSS MiB per process "
        "| sent = results + late + dlq | exact |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in caps:
        rows.append(
            f"| {c.contender} | {_f(c.capacity)} | {_f(c.capacity / ref, 2)} | {_f(c.cpu_per_on_time, 2)} "
            f"| {_rss(c.rss_mb)} | {c.accounting} | {c.exact}/{c.repeats} |"
        )
    return "\n".join(rows)


def render_loads(cells: Sequence[Median]) -> str:
    """One line per load and contender, contenders side by side within a load."""
    rows = [
        "| load | contender | offered/s | on-time results/s | goodput % of capacity | shed % "
        "| on time % of admitted | e2e p50 ms | e2e p99 ms | sent = results + late + dlq | exact "
        "| CPU ms / on-time result | peak RSS MiB per process |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    loads = [c for c in cells if c.load != CAPACITY]
    order = sorted({(c.factor if c.load != BURST else math.inf, c.load) for c in loads})
    for _, load in order:
        for c in (c for c in loads if c.load == load):
            burst = c.load == BURST
            rows.append(
                f"| {c.load} | {c.contender} | {f'{c.sent} at once' if burst else _f(c.offered)} "
                f"| {'-' if burst else _f(c.goodput)} | {'-' if burst else _f(c.goodput_pct, 1)} "
                f"| {_f(c.shed_pct, 2)} | {_f(c.on_time_pct, 2)} | {_f(c.p50_ms, 1)} | {_f(c.p99_ms, 1)} "
                f"| {c.accounting} | {c.exact}/{c.repeats} | {_f(c.cpu_per_on_time, 2)} | {_rss(c.rss_mb)} |"
            )
    return "\n".join(rows)


def render_ratios(cells: Sequence[Median]) -> str:
    """Capacity and goodput of each contender as a multiple of the reference peer's."""
    by = {(c.contender, c.load): c for c in cells}
    contenders = list(dict.fromkeys(c.contender for c in cells))
    lines = []
    for name in contenders:
        if name == REFERENCE:
            continue
        parts = []
        for load, what in ((CAPACITY, "capacity"), ("2×", "goodput at 2×"), ("4×", "goodput at 4×")):
            mine, ref = by.get((name, load)), by.get((REFERENCE, load))
            if mine is None or ref is None:
                continue
            a, b = (mine.capacity, ref.capacity) if load == CAPACITY else (mine.goodput, ref.goodput)
            parts.append(f"{what} {_f(a / b, 2)}×" if b else f"{what} {_f(a, 0)} against {REFERENCE}'s 0")
        lines.append(f"{name} vs {REFERENCE}: " + ", ".join(parts))
    peers = [by[(n, "2×")] for n in contenders if (n, "2×") in by and not n.startswith("ontime")]
    if peers:
        shares = ", ".join(f"{p.contender} {_f(p.on_time_pct, 1)} % on time" for p in peers)
        lines.append(f"peers at 2× (no deadlines, judged against the same one): {shares}")
    return "\n".join(lines)


def render_late(rows: Sequence[Row]) -> str:
    """Where and why frames went late, per contender and load, summed over repeats."""
    total: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        into = total.setdefault((row.contender, row.load), {})
        for where, n in row.late_by.items():
            into[where] = into.get(where, 0) + n
    lines = [
        f"{name} {load}: " + ", ".join(f"{w}={n}" for w, n in sorted(by.items(), key=lambda x: -x[1]))
        for (name, load), by in total.items()
        if by
    ]
    return "late records by stage:reason (frames, all repeats):\n" + ("\n".join(lines) or "none")


def render_stage_times(rows: Sequence[Row]) -> str:
    """Where the time of on-time and late results went, per contender, load and stage (all repeats).

    Queue includes the Kafka hop into the stage; a fused worker's later stages queue ~0 (the
    frame is handed on in memory).
    """
    lines: list[str] = []
    merged: dict[tuple[str, str], tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
    stalls: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if not math.isnan(row.stall_pct):
            stalls.setdefault((row.contender, row.load), []).append(row.stall_pct)
        queue, compute = merged.setdefault((row.contender, row.load), ({}, {}))
        for stage, values in row.queue_ms.items():
            queue.setdefault(stage, []).extend(values)
        for stage, values in row.compute_ms.items():
            compute.setdefault(stage, []).extend(values)
    for (name, load), (queue, compute) in merged.items():
        parts = []
        for stage in queue:
            q, c = summarize(queue[stage]), summarize(compute[stage])
            parts.append(f"{stage} {q.p50:.1f}/{q.p99:.1f} + {c.p50:.1f}/{c.p99:.1f}")
        pressure = stalls.get((name, load))
        if pressure:
            parts.append(f"CPU pressure {statistics.median(pressure):.0f} %")
        if parts:
            lines.append(f"{name} {load}: " + ", ".join(parts))
    head = (
        "time per stage of the results (queue incl. hop p50/p99 + compute p50/p99, ms), and the"
        " machine's CPU pressure during the row (PSI some: % of wall time a task waited for a CPU):\n"
    )
    return head + ("\n".join(lines) or "none")


def plot(cells: Sequence[Median], path: Path) -> Path:
    """goodput against offered load: absolute, and both as fractions of each contender's capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steady = [c for c in cells if c.load not in (CAPACITY, BURST)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = max([c.offered for c in steady if not math.isnan(c.offered)] or [1.0])
    for i, name in enumerate(dict.fromkeys(c.contender for c in steady)):
        mine = sorted((c for c in steady if c.contender == name), key=lambda c: c.factor)
        colour = colours[i % len(colours)]
        left.plot([c.offered for c in mine], [c.goodput for c in mine], "o-", color=colour, label=name)
        cap = mine[0].capacity
        left.plot([0, cap, top], [0, cap, cap], "--", color=colour, linewidth=1, alpha=0.6)
        right.plot(
            [c.factor for c in mine], [c.goodput_pct / 100.0 for c in mine], "o-", color=colour, label=name
        )
    factors = sorted({c.factor for c in steady} | {1.0})
    ideal = [min(f, 1.0) for f in factors]
    right.plot(factors, ideal, "k--", linewidth=1, label="ideal: min(offered, capacity)")
    left.set(
        xlabel="offered frames/s",
        ylabel="on-time results/s (goodput)",
        title="goodput vs offered load (dashed: each one's ideal)",
    )
    right.set(
        xlabel="offered load, × own capacity",
        ylabel="goodput, × own capacity",
        title="normalised to each contender's capacity",
    )
    right.set_xscale("log", base=2)
    right.set_xticks(factors, [f"{f:g}×" for f in factors])
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    left.legend(loc="upper left", fontsize=8)
    right.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
