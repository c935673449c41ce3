"""Prometheus series of a shadow run: how often the candidate agrees with the serving version.

Agreement per window is a PromQL ratio over these counters, e.g. over 5 minutes:
`sum(rate(ontime_shadow_frames_total{agree="yes"}[5m])) / sum(rate(ontime_shadow_frames_total[5m]))`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from workers.telemetry.metrics import LATENCY_BUCKETS

DELTA_BUCKETS = (-1.0, -0.5, -0.25, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Candidate's probability of the serving answer minus the serving version's own."""


class ShadowMetrics:
    """The `ontime_shadow_*` series of one shadow process, in a registry of its own."""

    def __init__(self, pipeline: str, stage: str, registry: CollectorRegistry | None = None) -> None:
        self.pipeline, self.stage = pipeline, stage
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        labels = ("pipeline", "stage")
        r = self.registry
        self.frames = Counter(
            "ontime_shadow_frames",
            "Frames the shadow compared, by the serving version's top-1 label and the candidate's agreement",
            (*labels, "label", "agree"), registry=r,
        )  # fmt: skip
        self.score_delta = Histogram(
            "ontime_shadow_score_delta",
            "Candidate's probability of the serving top-1 label minus the serving version's",
            labels, registry=r, buckets=DELTA_BUCKETS,
        )  # fmt: skip
        self.compute = Histogram(
            "ontime_shadow_compute_seconds",
            "Model run time of each shadow batch per version, serving and candidate on the same batch",
            (*labels, "model", "version"), registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip

    def observe(self, label: str, agree: bool, delta: float) -> None:
        self.frames.labels(self.pipeline, self.stage, label, "yes" if agree else "no").inc()
        self.score_delta.labels(self.pipeline, self.stage).observe(delta)

    def batch(self, identity: str, seconds: float) -> None:
        name, _, rest = identity.partition(":")
        self.compute.labels(self.pipeline, self.stage, name, rest.partition(":")[0]).observe(seconds)
