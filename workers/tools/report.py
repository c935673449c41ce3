"""`ontime report`: where the latency budget went, per stage, from the results themselves.

Every result carries its own per-stage queue and compute times, so a results topic (or a file
of results, one JSON object a line) is enough: no tracing backend is needed. The report prints
p50/p95/p99 per stage against the stage's share of the budget, and end-to-end against the
budget, then writes `budget.png` and `report.html` (the picture and the same table).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.results import Result
from workers.config.spec import STAGE_ORDER, PipelineSpec, pipeline_file
from workers.errors import ConfigError
from workers.tools import drift_report
from workers.tools.stats import Summary, summarize

PERCENTILES = ("p50", "p95", "p99")
_STAGE_COLOURS = {"preprocess": "#4C72B0", "infer": "#DD8452", "postprocess": "#55A868"}
_OTHER_COLOUR = "#8C8C8C"


@dataclass(frozen=True)
class StageRow:
    """One stage's timings over all results, and the share of the budget it was given."""

    stage: str
    budget_ms: float | None
    queue: Summary
    compute: Summary
    total: Summary

    def verdict(self) -> str:
        if self.budget_ms is None or self.total.count == 0:
            return ""
        return "within" if self.total.p95 <= self.budget_ms else "OVER"


@dataclass(frozen=True)
class BudgetBreakdown:
    """Everything the report shows, computed once from the results."""

    pipeline: str
    budget_ms: float | None
    count: int
    statuses: dict[str, int]
    stages: list[StageRow]
    end_to_end: Summary
    e2e_values: list[float]
    within_budget: float | None
    transport_ms: float | None

    @classmethod
    def of(cls, results: Sequence[Result], pipeline: PipelineSpec | None = None) -> BudgetBreakdown:
        names = [s for s in STAGE_ORDER if any(t.stage == s for r in results for t in r.stages)]
        names += sorted({t.stage for r in results for t in r.stages} - set(names))
        rows = []
        for name in names:
            timings = [t for r in results for t in r.stages if t.stage == name]
            share = (
                pipeline.stage_budget_ms(name) if pipeline is not None and name in pipeline.stages else None
            )
            rows.append(
                StageRow(
                    stage=name,
                    budget_ms=share,
                    queue=summarize(t.queue_ms for t in timings),
                    compute=summarize(t.compute_ms for t in timings),
                    total=summarize(t.queue_ms + t.compute_ms for t in timings),
                )
            )
        budget = pipeline.budget_ms if pipeline is not None else None
        e2e = [end_to_end_ms(r, budget) for r in results]
        values = [v for v in e2e if v is not None]
        within = (
            sum(1 for v in values if v <= budget) / len(values) if budget is not None and values else None
        )
        return cls(
            pipeline=pipeline.name if pipeline is not None else (results[0].pipeline if results else "?"),
            budget_ms=budget,
            count=len(results),
            statuses=dict(Counter(r.status for r in results)),
            stages=rows,
            end_to_end=summarize(values),
            e2e_values=values,
            within_budget=within,
            transport_ms=budget * pipeline.transport_share if pipeline is not None and budget else None,
        )


def end_to_end_ms(result: Result, budget_ms: float | None) -> float | None:
    """Completed minus captured; without a capture time, minus the deadline's start (deadline − budget)."""
    if result.captured_ms is not None:
        return float(result.completed_ms - result.captured_ms)
    if budget_ms is None:
        return None
    return float(result.completed_ms - (result.deadline_ms - budget_ms))


def bundled_pipeline(name: str) -> PipelineSpec | None:
    """The shipped pipelines/<name>/pipeline.yaml, for budgets when the caller gave none."""
    path = pipeline_file(name) if name.replace("-", "").replace("_", "").isalnum() else None
    if path is None or not path.is_file():
        return None
    try:
        return PipelineSpec.model_validate(yaml.safe_load(path.read_text()))
    except (ValidationError, yaml.YAMLError):
        return None


# -- reading -------------------------------------------------------------------------------


def read_file(path: Path) -> list[Result]:
    """Results from a JSON-lines file; blank lines are skipped, an invalid line is a ConfigError."""
    results = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            results.append(Result.model_validate_json(line))
        except ValidationError as exc:
            raise ConfigError(f"{path}:{n}: not a result record: {exc.errors()[0]['msg']}") from None
    return results


def read_topic(kafka_conf: dict[str, str], topic: str, timeout_s: float = 30.0) -> tuple[list[Result], int]:
    """Every result on `topic` from the beginning to the current end; returns (results, skipped).

    Reads with a throwaway group that never commits, so running a report moves no one's offsets.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            **kafka_conf,
            "group.id": f"ontime.report.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "auto.offset.reset": "earliest",
        }
    )
    results: list[Result] = []
    skipped = 0
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ConfigError(f"topic {topic} not found: {meta.error if meta else 'no metadata'}")
        parts = [TopicPartition(topic, p, -2) for p in meta.partitions]  # -2: OFFSET_BEGINNING
        pending = set()
        for tp in parts:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > low:
                pending.add(tp.partition)
        consumer.assign(parts)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise ConfigError(f"reading {topic}: {err.str()}")
            try:
                results.append(Result.model_validate_json(msg.value() or b""))
            except ValidationError:
                skipped += 1
    finally:
        consumer.close()
    return results, skipped


# -- text ----------------------------------------------------------------------------------


def render_table(budget: BudgetBreakdown) -> str:
    """The budget as a plain-text table (milliseconds)."""

    def cells(s: Summary) -> str:
        return "".join(f"{s.cell(q):>8}" for q in PERCENTILES)

    group = f"{'':<12}{'':>8}   {'queue':^24} {'compute':^24} {'queue + compute':^24}".rstrip()
    head = f"{'stage':<12}{'budget':>8}   " + " ".join(
        "".join(f"{q:>8}" for q in PERCENTILES) for _ in range(3)
    )
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(budget.statuses.items()))
    lines = [f"latency budget of {budget.pipeline}: {budget.count} results ({statuses}); milliseconds", ""]
    lines += [group, head]
    for row in budget.stages:
        share = f"{row.budget_ms:8.1f}" if row.budget_ms is not None else f"{'-':>8}"
        timings = f"{cells(row.queue)} {cells(row.compute)} {cells(row.total)}"
        lines.append(f"{row.stage:<12}{share}   {timings}  {row.verdict()}")
    if budget.transport_ms:
        lines.append(f"{'transport':<12}{budget.transport_ms:8.1f}   (Kafka hops; not measured per stage)")
    e2e = budget.end_to_end
    total = f"{budget.budget_ms:8.1f}" if budget.budget_ms is not None else f"{'-':>8}"
    lines += ["", f"{'end-to-end':<12}{total}   {cells(e2e)}   n={e2e.count}, max {e2e.cell('max')}"]
    if budget.within_budget is not None:
        lines.append(f"within the {budget.budget_ms:.0f} ms budget: {100 * budget.within_budget:.1f} %")
    return "\n".join(lines)


# -- picture -------------------------------------------------------------------------------


def render_png(budget: BudgetBreakdown, path: Path) -> Path:
    """Stacked per-stage queue+compute bars per percentile, and the end-to-end distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, dist) = plt.subplots(
        1, 2, figsize=(15, 6.8), gridspec_kw={"width_ratios": [1.15, 1.0]}, constrained_layout=True
    )
    statuses = ", ".join(f"{v} {k}" for k, v in sorted(budget.statuses.items()))
    fig.suptitle(
        f"Latency budget of '{budget.pipeline}': {budget.count} results ({statuses})",
        fontsize=14,
        fontweight="bold",
    )
    _stacked_bars(bars, budget)
    _distribution(dist, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _stacked_bars(ax: Any, budget: BudgetBreakdown) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    labels = list(PERCENTILES)
    with_budget = budget.budget_ms is not None and any(r.budget_ms is not None for r in budget.stages)
    if with_budget:
        labels.append("budget\nshares")
    positions = list(range(len(labels)))
    width = 0.5
    bottoms = [0.0] * len(PERCENTILES)
    handles: list[Any] = []
    for row in budget.stages:
        colour = _STAGE_COLOURS.get(row.stage, _OTHER_COLOUR)
        for part, summary in (("queue", row.queue), ("compute", row.compute)):
            heights = [_value(summary, q) for q in PERCENTILES]
            style: dict[str, Any] = {"facecolor": colour, "edgecolor": "white", "linewidth": 0.6}
            if part == "queue":
                style = {"facecolor": _tint(colour), "edgecolor": colour, "hatch": "///", "linewidth": 0}
            ax.bar(positions[: len(PERCENTILES)], heights, bottom=bottoms, width=width, **style)
            handles.append(Patch(**style, label=f"{row.stage} {part}"))
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    e2e = [_value(budget.end_to_end, q) for q in PERCENTILES]
    for x, (top, v) in enumerate(zip(bottoms, e2e, strict=True)):
        # The sum sits left of the bar, the end-to-end mark's number right: they never collide.
        ax.text(x - width / 2 - 0.04, top, f"Σ {top:.1f}", ha="right", va="center", fontsize=9, color="#333")
        ax.hlines(v, x - width / 2 - 0.05, x + width / 2 + 0.05, color="black", linewidth=2.5, zorder=5)
        ax.text(x + width / 2 + 0.07, v, f"{v:.0f}", ha="left", va="center", fontsize=10, fontweight="bold")
    handles.append(Line2D([], [], color="black", linewidth=2.5, label="end-to-end (measured)"))
    if with_budget:
        x, bottom = len(PERCENTILES), 0.0
        shares = [(r.stage, r.budget_ms, _STAGE_COLOURS.get(r.stage, _OTHER_COLOUR)) for r in budget.stages]
        if budget.transport_ms:
            shares.append(("transport", budget.transport_ms, _OTHER_COLOUR))
        for name, ms, colour in shares:
            if ms is None:
                continue
            ax.bar(x, ms, bottom=bottom, width=width, facecolor=_tint(colour, 0.8), edgecolor=colour)
            ax.text(x, bottom + ms / 2, f"{name}\n{ms:.0f}", ha="center", va="center", fontsize=8)
            bottom += ms
    if budget.budget_ms is not None:
        ax.axhline(budget.budget_ms, color="crimson", linestyle="--", linewidth=1.8, zorder=4)
        handles.append(
            Line2D([], [], color="crimson", linestyle="--", label=f"budget {budget.budget_ms:.0f} ms")
        )
    top = max([*bottoms, *e2e, budget.budget_ms or 0.0])
    ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_xticks(positions, labels, fontsize=11)
    ax.set_ylabel("milliseconds")
    ax.set_title("Per-stage queue + compute at each percentile (Σ: sum of stages; bold: end-to-end)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=9, frameon=False
    )


def _distribution(ax: Any, budget: BudgetBreakdown) -> None:
    import numpy as np

    values = np.sort(np.asarray(budget.e2e_values, dtype=float))
    ax.set_title("End-to-end latency (capture → result delivered)")
    ax.set_xlabel("milliseconds")
    if values.size == 0:
        ax.text(0.5, 0.5, "no end-to-end times", ha="center", va="center", transform=ax.transAxes)
        return
    limit = max(float(values[-1]), budget.budget_ms or 0.0) * 1.06
    # Whole-millisecond bins (times are whole ms), about 30 across the data.
    width = max(1.0, float(np.ceil(values[-1] / 30.0)))
    edges = np.arange(0.0, float(values[-1]) + 2 * width, width)
    ax.hist(values, bins=edges, color="#4C72B0", alpha=0.7, label="results per bin")
    ax.set_ylabel("results per bin")
    ax.set_xlim(0, limit)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    cdf = ax.twinx()
    xs = np.concatenate([[0.0], values, [limit]])
    ys = np.concatenate([[0.0], np.arange(1, values.size + 1) / values.size, [1.0]])
    cdf.step(xs, ys, where="post", color="black", linewidth=1.6, label="cumulative share")
    cdf.set_ylim(0, 1.05)
    cdf.set_ylabel("cumulative share of results")
    for q, colour in zip(PERCENTILES, ("#2ca02c", "#ff7f0e", "#9467bd"), strict=True):
        v = _value(budget.end_to_end, q)
        cdf.axvline(v, color=colour, linestyle=":", linewidth=1.8, label=f"{q} {v:.0f} ms")
    if budget.budget_ms is not None:
        share = budget.within_budget or 0.0
        cdf.axvline(
            budget.budget_ms,
            color="crimson",
            linestyle="--",
            linewidth=2,
            label=f"deadline {budget.budget_ms:.0f} ms: {100 * share:.1f} % within",
        )
    lines, names = ax.get_legend_handles_labels()
    more, more_names = cdf.get_legend_handles_labels()
    cdf.legend(lines + more, names + more_names, loc="center right", bbox_to_anchor=(0.9, 0.45), fontsize=9,
               framealpha=0.95)  # fmt: skip


def _tint(colour: str, amount: float = 0.6) -> tuple[float, float, float]:
    """`colour` mixed with white: the queue part of a stage, next to its solid compute part."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _value(summary: Summary, q: str) -> float:
    value: float = getattr(summary, q)
    return 0.0 if summary.count == 0 else value


# -- html ----------------------------------------------------------------------------------


def render_html(budget: BudgetBreakdown, png: Path) -> str:
    """A self-contained page: the picture (inlined) and the table."""
    image = base64.b64encode(png.read_bytes()).decode()

    def tds(s: Summary) -> str:
        return "".join(f"<td>{s.cell(q)}</td>" for q in PERCENTILES)

    rows = []
    for row in budget.stages:
        share = f"{row.budget_ms:.1f}" if row.budget_ms is not None else "-"
        verdict = row.verdict()
        css = ' class="over"' if verdict == "OVER" else ""
        rows.append(
            f"<tr><th>{html.escape(row.stage)}</th><td>{share}</td>{tds(row.queue)}{tds(row.compute)}"
            f"{tds(row.total)}<td{css}>{verdict}</td></tr>"
        )
    total = f"{budget.budget_ms:.1f}" if budget.budget_ms is not None else "-"
    within = "" if budget.within_budget is None else f"{100 * budget.within_budget:.1f} % within budget"
    rows.append(
        f'<tr class="e2e"><th>end-to-end</th><td>{total}</td><td colspan="6"></td>'
        f"{tds(budget.end_to_end)}<td>{within}</td></tr>"
    )
    statuses = ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(budget.statuses.items()))
    title = f"ontime latency budget — {html.escape(budget.pipeline)}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
thead th {{ background: #f3f3f3; }}
tr.e2e {{ font-weight: bold; background: #fafafa; }}
td.over {{ color: crimson; font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>{budget.count} results ({statuses}). Times in milliseconds; a stage is over when its p95 of
queue + compute exceeds its share of the budget.</p>
<img src="data:image/png;base64,{image}" alt="latency budget per stage and end-to-end distribution">
<table>
<thead><tr><th rowspan="2">stage</th><th rowspan="2">budget</th><th colspan="3">queue</th>
<th colspan="3">compute</th><th colspan="3">queue + compute</th><th rowspan="2"></th></tr>
<tr>{"<th>p50</th><th>p95</th><th>p99</th>" * 3}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""


def write_report(results: list[Result], out_dir: Path, pipeline: PipelineSpec | None = None) -> list[Path]:
    """Write `budget.png`, `report.html` and `report.txt` into `out_dir`; returns their paths.

    Without `pipeline`, budgets come from the bundled pipeline the results name, if there is one.
    """
    if not results:
        raise ConfigError("no results to report on")
    if pipeline is None:
        pipeline = bundled_pipeline(results[0].pipeline)
    budget = BudgetBreakdown.of(results, pipeline)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = render_png(budget, out_dir / "budget.png")
    page = out_dir / "report.html"
    page.write_text(render_html(budget, png))
    text = out_dir / "report.txt"
    text.write_text(render_table(budget) + "\n")
    return [png, page, text]


# -- CLI -----------------------------------------------------------------------------------


def register_cli(subparsers: Any) -> None:
    """Add `ontime report` to the top-level verbs."""
    parser = subparsers.add_parser(
        "report",
        help="latency budget per stage from a results topic or file, as a table and a picture",
        description="Reads Result records and prints p50/p95/p99 of queue and compute per stage "
        "against each stage's share of the budget; writes budget.png and report.html.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--topic", help="results topic to read from the beginning (default: P.results)")
    source.add_argument("--file", type=Path, help="JSON-lines file of results instead of a topic")
    source.add_argument(
        "--shadow",
        action="store_true",
        help="the shadow candidate's agreement with the serving version (P.shadow)",
    )
    parser.add_argument("--window", type=float, default=60.0, help="--shadow: seconds per window (60)")
    parser.add_argument(
        "--bootstrap",
        dest="report_bootstrap",
        default=None,
        metavar="SERVERS",
        help="Kafka bootstrap servers for --topic",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="directory for the PNG and HTML")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to read the topic for at most")
    parser.add_argument(
        "--drift", action="store_true", help="instead: drift scores vs thresholds from workers' /metrics"
    )
    parser.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        metavar="URL",
        help="a worker's /metrics for --drift (repeat for each replica; default http://127.0.0.1:9400/metrics)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.drift:
        return drift_report.report(args.metrics_url or ["http://127.0.0.1:9400/metrics"], sys.stdout)
    extra: dict[str, Any] = {}
    if args.report_bootstrap:
        extra = {"kafka": {"bootstrap_servers": args.report_bootstrap}}
    settings = args.load_settings(extra=extra)
    pipeline = settings.pipeline
    if args.shadow:
        from workers.tools.shadow_report import read_comparisons, render

        print(render(read_comparisons(settings, args.timeout), args.window))
        return 0
    if args.file is not None:
        results = read_file(args.file)
        origin = str(args.file)
    else:
        topic = args.topic or pipeline.topics.results
        results, skipped = read_topic(settings.kafka.as_librdkafka_dict(), topic, args.timeout)
        origin = topic + (f" ({skipped} records that are not results skipped)" if skipped else "")
    names = {r.pipeline for r in results}
    if names and names != {pipeline.name}:
        print(
            f"note: results are from {', '.join(sorted(names))}; budget from {pipeline.name}", file=sys.stderr
        )
    paths = write_report(results, args.out, pipeline)
    print(f"read {len(results)} results from {origin}\n")
    print(render_table(BudgetBreakdown.of(results, pipeline)))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def dump_results(results: Iterable[Result], path: Path) -> Path:
    """Write results as JSON lines (the format `--file` reads)."""
    path.write_text(
        "".join(json.dumps(r.model_dump(mode="json"), separators=(",", ":")) + "\n" for r in results)
    )
    return path
