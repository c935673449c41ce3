"""The pipeline definition: topics, stages, models and the deadline budget, as read from YAML.

`pipelines/<name>/pipeline.yaml` is validated into `PipelineSpec`; every derived name (topic of a
stage, consumer group, budget in milliseconds) is computed here so no other module re-derives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_REPO = Path(__file__).resolve().parents[2]
PIPELINES_DIR = _REPO / "pipelines"
# Default of `OntimeSettings.models_dir`; a container or a test points it elsewhere.
MODELS_DIR = _REPO / "models"
STAGE_ORDER = ("preprocess", "infer", "postprocess")
TOPIC_KINDS = ("raw", "features", "scores", "results", "late", "dlq", "control", "shadow")
"""The topics of a pipeline, in flow order, then the control and shadow topics (the fields of `Topics`)."""

StageName = Literal["preprocess", "infer", "postprocess"]


class FrameSpec(BaseModel):
    """The raw frame a pipeline accepts from devices, and the pure function that decodes it.

    The runtime knows no frame format: `decoder` names a factory in the pipeline's own package
    (`pipelines.<name>.frames:decoder`), called once with this spec; the function it returns maps
    (payload, content type) to one frame's input to the preprocess model, or raises a
    PoisonMessage. `params` are the decoder's own settings (sizes, accepted conversions).
    """

    model_config = ConfigDict(extra="forbid")
    content_type: str = Field(description="what devices send, e.g. image/png or audio/pcm;rate=16000")
    decoder: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:function of the frame decoder"
    )
    params: dict[str, int | float | str | bool] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _numbers_from_text(cls, value: Any) -> Any:
        """`--set …params.width=32` and `ONTIME_…` give text; a number in text is a number."""
        if not isinstance(value, dict):
            return value
        return {k: _number(v) if isinstance(v, str) else v for k, v in value.items()}


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


class DevicesSpec(BaseModel):
    """What `ontime devices simulate` publishes for this pipeline: real labelled frames."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function(split) returning labelled frames (label, source, payload bytes)",
    )
    key_prefix: str = Field("dev-", pattern=r"^[A-Za-z0-9._-]*$", description="device ids: <prefix>0001, …")


class Topics(BaseModel):
    model_config = ConfigDict(extra="forbid")
    raw: str
    features: str
    scores: str
    results: str
    late: str
    dlq: str
    control: str = Field(
        "", description="compacted topic of the stages' latency reports; default: <raw prefix>.control"
    )
    shadow: str = Field(
        "", description="a shadow candidate's answers beside the serving ones; default: <raw prefix>.shadow"
    )
    events: str | None = Field(
        None, description="keyword events of `ontime aggregate` (default `<pipeline name>.events`)"
    )
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _control_name(self) -> Topics:
        stem = self.raw[: -len(".raw")] if self.raw.endswith(".raw") else self.raw
        if not self.control:
            self.control = f"{stem}.control"
        if not self.shadow:
            self.shadow = f"{stem}.shadow"
        return self

    def all(self) -> list[str]:
        names = [getattr(self, kind) for kind in TOPIC_KINDS]
        return names if self.events is None else [*names, self.events]

    def config_of(self, topic: str) -> tuple[int, dict[str, str]]:
        """Partitions and topic configs, the same wherever topics are created (workers/kafka/topics.py).

        The control topic keeps the newest report per key. Results carry the broker's append time
        (LogAppendTime): when the answer was durably there for consumers, whatever the producing
        worker's clock; the bench judges "delivered by the deadline" by it. The input topics keep
        CreateTime, since the first stage stamps a missing deadline from the record timestamp.
        """
        if topic == self.control:
            return 1, {"cleanup.policy": "compact", "segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1"}
        if topic == self.results:
            return self.partitions, {"message.timestamp.type": "LogAppendTime"}
        return self.partitions, {}


class EventsSpec(BaseModel):
    """How `ontime aggregate` turns per-window results into keyword events (docs/events.md).

    The defaults are the numbers tuned on tuning audio only (`ontime bench events --tune`).
    """

    model_config = ConfigDict(extra="forbid")
    smooth_windows: int = Field(2, ge=1, le=64, description="windows averaged per device")
    min_windows: int = Field(2, ge=1, le=64, description="windows that must be present to fire")
    threshold: float = Field(0.7, gt=0, le=1, description="smoothed keyword score that fires")
    refractory_ms: int = Field(1500, ge=0, description="no new event this long after one ends")
    hop_ms: int = Field(250, gt=0, description="expected spacing of a device's windows")
    pool: Literal["mean", "max"] = Field(
        "mean", description="how a keyword's per-window evidence is pooled over the smoothing span"
    )
    margin: float = Field(
        0.0,
        ge=0,
        le=1,
        description="weight of the strongest other label (incl. _unknown_/_background_) "
        "subtracted from a keyword's score in each window",
    )
    peak: bool = Field(
        False, description="fire at the peak of the pooled track (one hop later), not at the crossing"
    )
    dedupe_windows: int = Field(64, ge=1, description="result ids remembered per device to drop duplicates")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="per-keyword thresholds overriding `threshold` (calibrated on tuning audio)",
    )
    min_top: int = Field(
        0,
        ge=0,
        le=64,
        description="windows of the smoothing span in which the keyword must be the top label "
        "(`_unknown_`/`_background_` included) before it fires; 0: no such check",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 < v <= 1 or k.startswith("_")}
        if bad:
            raise ValueError(f"per-keyword thresholds must be keywords with 0 < threshold ≤ 1: {bad}")
        return value

    def threshold_of(self, keyword: str) -> float:
        """The threshold `keyword` fires at: its own if calibrated, else the common one."""
        return self.thresholds.get(keyword, self.threshold)


class BatchSpec(BaseModel):
    """A batch is what piled up while the previous one ran (work-conserving): an idle stage runs a
    lone frame at once. `max_wait_ms > 0` lets a batch wait for company, but only as long as its
    most urgent member can still make its deadline (workers/deadlines/batcher.py)."""

    model_config = ConfigDict(extra="forbid")
    max_size: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(0.0, ge=0)


class CacheSpec(BaseModel):
    """Content-hash → output cache of one stage (off by default: only repeated inputs gain)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    max_entries: int = Field(4096, ge=1, le=10_000_000)
    ttl_ms: float | None = Field(None, gt=0)


class GateSpec(BaseModel):
    """Early-exit cascade: a tiny model answers alone when its top probability reaches `threshold`."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="gate model variant as <pipeline>/<variant> under models/")
    threshold: float = Field(gt=0, le=1, description="from the gate card's calibration")


class StageSpec(BaseModel):
    """One stage: which model it serves, its cheaper fallback, and its share of the budget."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="model variant as <pipeline>/<variant> under models/")
    fallback: str | None = Field(
        None, description="cheaper variant answering `degraded` when the model would miss"
    )
    gate: GateSpec | None = None
    cache: CacheSpec = Field(default_factory=CacheSpec)
    budget_share: float = Field(gt=0, le=1)
    batch: BatchSpec = Field(default_factory=BatchSpec)
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads")
    exactly_once: bool = Field(
        False, description="Kafka transactions around each batch (outputs and input offsets commit together)"
    )


class PipelineSpec(BaseModel):
    """A whole pipeline as declared in its YAML file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    budget_ms: float = Field(gt=0, le=60_000)
    max_clock_skew_ms: float = Field(50, ge=0)
    late_policy: Literal["route", "deliver"] = "route"
    late_payload: Literal["reference", "copy"] = Field(
        "reference",
        description="P.late records point at their source record (reference) or carry its payload (copy)",
    )
    skip_ahead: bool = Field(True, description="seek past a backlog head that cannot make its deadlines")
    frame: FrameSpec
    devices: DevicesSpec | None = None
    topics: Topics
    stages: dict[StageName, StageSpec]
    transport_share: float = Field(0.0, ge=0, le=1)
    top_k: int = Field(3, ge=1)
    events: EventsSpec = Field(default_factory=EventsSpec)

    @model_validator(mode="after")
    def _events_topic(self) -> PipelineSpec:
        # Optional in YAML so older pipeline files stay valid; derived from the name when absent.
        if self.topics.events is None:
            self.topics.events = f"{self.name}.events"
        return self

    @model_validator(mode="after")
    def _shares_fit(self) -> PipelineSpec:
        missing = [s for s in STAGE_ORDER if s not in self.stages]
        if missing:
            raise ValueError(f"stages: missing {', '.join(missing)}")
        total = sum(s.budget_share for s in self.stages.values()) + self.transport_share
        if total > 1.0 + 1e-9:
            raise ValueError(f"budget shares add up to {total:.2f} > 1.0")
        return self

    def stage_budget_ms(self, stage: str) -> float:
        return self.budget_ms * self.stages[stage].budget_share  # type: ignore[index]

    def group_id(self, stage: str) -> str:
        return f"ontime.{self.name}.{stage}"

    def input_topic(self, stage: str) -> str:
        return {
            "preprocess": self.topics.raw,
            "infer": self.topics.features,
            "postprocess": self.topics.scores,
        }[stage]

    def output_topic(self, stage: str) -> str:
        return {
            "preprocess": self.topics.features,
            "infer": self.topics.scores,
            "postprocess": self.topics.results,
        }[stage]

    def downstream_share(self, stage: str) -> float:
        """Budget share of the stages after `stage`: the reserve a stage must leave for them."""
        after = STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :]
        return sum((self.stages[s].budget_share for s in after), 0.0) + self.transport_share  # type: ignore[index]


def pipeline_file(name_or_path: str) -> Path:
    """`acoustic` → the bundled pipelines/acoustic/pipeline.yaml; anything with a slash is a path."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return Path(name_or_path)
    return PIPELINES_DIR / name_or_path / "pipeline.yaml"
