"""The downstream reserve from what the later stages really take, not from their budget shares.

A stage admits a frame only if ``remaining ≥ its own cost + reserve``, where the reserve is the
time the stages after it will need. The static budget shares (e.g. 140 ms of 250 ms left for
infer + postprocess + hops) are a pessimistic guess: measured, those stages take ~35 ms at p99.
Every stage therefore measures, per frame, the time from its upstream's produce to its own
output (queue, which includes the Kafka hop, plus compute), and reports a high percentile of a
sliding window on the pipeline's compacted control topic (`P.control`, key `latency/<stage>/<replica>`).
Each worker reads the control topic into a `LatencyBoard`; its stages plan with the measured
percentile (× a margin) of every later stage that has a fresh report, and with the static share
for a stage that has none (no replica running, or none reported within `stale_ms`). The reserve
never exceeds the static one: measurements may only admit frames the shares would shed, so a
slow downstream is handled by its own admission, not by upstream starving it.

Replicas of one stage report separately; the board takes the slowest fresh one, since a frame
may land on any of them. A replica that saw no frames lately repeats its last measurement (an
idle stage is as fast as it was, and a burst after a quiet minute must not be judged by the
pessimistic shares); only a replica that stops reporting altogether falls back to the prior.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from workers.config.spec import STAGE_ORDER, PipelineSpec
from workers.messages.deadline import Clock, now_ms

REPORT_QUANTILE = 0.99
WINDOW_MS = 2_000.0  # a report covers the frames of the last two seconds: a drained backlog is
# forgotten quickly, and an idle stage repeats its last report (see LatencyPublisher)
STALE_MS = 6_000.0  # no report for this long: the replica is gone, and the prior answers again
MIN_FRAMES = 10  # fewer frames than this make no percentile worth planning with
MARGIN = 1.2  # measured p99 × margin + floor: the tail of a sum is not the sum of tails
MARGIN_FLOOR_MS = 2.0
LATENCY_PREFIX = "latency/"  # key prefix of the reports on P.control
_HOPS_TOTAL = 4  # Kafka produces of a frame: raw, features, scores, results


@dataclass(frozen=True, slots=True)
class LatencyReport:
    """One replica's recent per-frame latency of one stage (queue incl. hop, plus compute)."""

    stage: str
    replica: str
    quantile_ms: float
    p50_ms: float
    frames: int
    at_ms: float

    def key(self) -> bytes:
        return f"{LATENCY_PREFIX}{self.stage}/{self.replica}".encode()

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> LatencyReport:
        """Raises ValueError (incl. JSON and key errors) on anything that is not a report."""
        data = json.loads(value)
        try:
            report = cls(
                stage=str(data["stage"]),
                replica=str(data["replica"]),
                quantile_ms=float(data["quantile_ms"]),
                p50_ms=float(data["p50_ms"]),
                frames=int(data["frames"]),
                at_ms=float(data["at_ms"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a latency report: {exc}") from None
        if not (np.isfinite(report.quantile_ms) and report.quantile_ms >= 0):
            raise ValueError("latency report with a non-finite or negative quantile")
        return report


class LatencyWindow:
    """Per-frame latencies of one stage in this process over the last `window_ms`."""

    def __init__(self, window_ms: float = WINDOW_MS, max_frames: int = 4096) -> None:
        self.window_ms = window_ms
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_frames)

    def observe(self, at_ms: float, latency_ms: float) -> None:
        if np.isfinite(latency_ms) and latency_ms >= 0:
            self._samples.append((at_ms, latency_ms))

    def report(self, stage: str, replica: str, now: float) -> LatencyReport | None:
        """The window's percentile as a report, or None with too few recent frames."""
        while self._samples and self._samples[0][0] < now - self.window_ms:
            self._samples.popleft()
        if len(self._samples) < MIN_FRAMES:
            return None
        values = np.fromiter((v for _, v in self._samples), dtype=np.float64, count=len(self._samples))
        q, p50 = np.quantile(values, [REPORT_QUANTILE, 0.5])
        return LatencyReport(stage, replica, float(q), float(p50), int(values.size), now)


class LatencyBoard:
    """The freshest report of every (stage, replica), shared by the stages of one worker."""

    def __init__(self, stale_ms: float = STALE_MS, clock: Clock = now_ms) -> None:
        self.stale_ms = stale_ms
        self._clock = clock
        self._reports: dict[tuple[str, str], LatencyReport] = {}
        self._lock = threading.Lock()

    def put(self, report: LatencyReport) -> None:
        with self._lock:
            old = self._reports.get((report.stage, report.replica))
            if old is None or report.at_ms >= old.at_ms:
                self._reports[(report.stage, report.replica)] = report

    def measured_ms(self, stage: str, now: float | None = None) -> float | None:
        """The slowest fresh replica's percentile for `stage`, or None when none is fresh."""
        now = self._clock() if now is None else now
        with self._lock:
            fresh = [
                r.quantile_ms
                for (s, _), r in self._reports.items()
                if s == stage and now - r.at_ms <= self.stale_ms
            ]
        return max(fresh) if fresh else None


class DownstreamReserve:
    """What a stage must leave for the stages after it: measured where known, the share where not."""

    def __init__(self, pipeline: PipelineSpec, stage: str, board: LatencyBoard | None = None) -> None:
        self.stage = stage
        self.board = board
        self.after = STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :]
        hop_ms = pipeline.budget_ms * pipeline.transport_share / _HOPS_TOTAL
        # The prior of a later stage: its own share plus the hop into it. The final produce onto
        # P.results is one more hop the frame's deadline does not wait for but the prior keeps.
        self.prior_ms = {s: pipeline.stage_budget_ms(s) + hop_ms for s in self.after}
        self.static_ms = sum(self.prior_ms.values(), 0.0) + hop_ms

    def reserve_ms(self, now: float | None = None) -> float:
        """Σ over later stages of (measured percentile × margin, or the static prior), plus a floor."""
        if self.board is None or not self.after:
            return self.static_ms
        measured = {s: self.board.measured_ms(s, now) for s in self.after}
        if all(m is None for m in measured.values()):
            return self.static_ms
        total = MARGIN_FLOOR_MS
        for stage, ms in measured.items():
            total += self.prior_ms[stage] if ms is None else ms * MARGIN
        return min(total, self.static_ms)

    def measured(self, now: float | None = None) -> bool:
        """Whether the reserve comes from measurements right now (for logs and metrics)."""
        return self.board is not None and all(self.board.measured_ms(s, now) is not None for s in self.after)
