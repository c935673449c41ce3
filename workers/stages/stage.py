"""The three stage computations, free of Kafka: envelopes in, outcomes out.

`Stage.process` is what both the Kafka worker and the in-process chain call; it decides per
message whether it is emitted downstream, routed late, or dead-lettered, and never raises for a
bad message. In order, for one batch:

1. validate and decode every member (cheap): header defects, undecodable payloads and tensors
   whose dtype or shape the model cannot take go to `P.dlq`, however loaded the stage is; on the
   pipeline's input topic, internal headers set by a device are dropped first;
2. admission of the valid members (no compute): those that cannot finish in time are shed to
   `P.late` (`expired`, `insufficient-budget`); when the primary model would miss but the fallback
   fits, the most urgent members run on the fallback and answer `degraded` (see admission.py);
   with a canary (canary.py), the members of its devices that run on the primary run on the
   candidate version instead (no cache, no gate for them);
3. cache (when enabled): identical inputs already answered by the primary are served as is;
4. gate (when configured): a tiny model answers alone where it is confident enough;
5. the model runs once per variant on its group; each run feeds that variant's cost model;
6. encode; a member that finished past its deadline anyway goes to `P.late` as `missed`.

With `late_policy: deliver` nothing is shed: members that would miss run on the cheapest variant
and carry status `late` through to the result.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from schemas.results import ModelRef, Result, Score, StageLatency
from workers.config.spec import MODELS_DIR, PipelineSpec
from workers.deadlines.admission import Costs, plan
from workers.deadlines.budget import StageBudget
from workers.deadlines.costs import CostModel, Line
from workers.deadlines.reserve import DownstreamReserve, LatencyBoard
from workers.errors import BadDtype, BadSamples, BadShape, ModelError, PoisonMessage
from workers.messages import codec, reasons
from workers.messages.deadline import Clock, now_ms
from workers.messages.envelope import Envelope
from workers.messages.frames import load_decoder
from workers.messages.headers import StageTime
from workers.messages.outcome import Outcome, Status, worse
from workers.stages.cache import ResultCache, content_key, owned, row_nbytes
from workers.stages.canary import Canary
from workers.stages.model import OnnxModel
from workers.telemetry.hooks import NOOP, Telemetry
from workers.telemetry.logs import event

log = logging.getLogger("ontime.stage")

Row = dict[str, np.ndarray]


class Stage:
    """Decode each message, run the stage's model on the batch, encode each output."""

    name: ClassVar[str]

    def __init__(
        self,
        pipeline: PipelineSpec,
        model: OnnxModel,
        *,
        fallback: OnnxModel | None = None,
        gate: OnnxModel | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self.pipeline = pipeline
        self.spec = pipeline.stages[self.name]  # type: ignore[index]
        self.model = model
        self.fallback = fallback
        self.gate = gate
        self.input_name = model.input_names[0]
        self.input_dtype = np.dtype(_ORT_DTYPES.get(model.session.get_inputs()[0].type, np.float32))
        # The pipeline's input topic is written by devices: internal headers there are dropped.
        self.reads_device_input = pipeline.input_topic(self.name) == pipeline.topics.raw
        for other in (fallback, gate):
            if (
                other is not None
                and other.input_shape(other.input_names[0])[1:] != model.input_shape(self.input_name)[1:]
            ):
                raise ModelError(f"{self.name}: {other.ref} takes a different input than {model.ref}")
        self.budget = StageBudget.of(pipeline, self.name)
        self.reserve = DownstreamReserve(pipeline, self.name)
        self.clock = clock
        self.costs = {
            "primary": CostModel(),
            "fallback": CostModel(),
            "gate": CostModel(),
            "candidate": CostModel(),
            "overhead": CostModel(),
        }
        self.canary: Canary | None = None  # set between batches by workers/loop/rollout.py
        self.cache: ResultCache[Row] | None = (
            ResultCache(self.spec.cache.max_entries, self.spec.cache.ttl_ms, clock, size_of=row_nbytes)
            if self.spec.cache.enabled
            else None
        )
        self.rows_by_variant: Counter[str] = Counter()
        self.shed: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.untrusted: Counter[str] = Counter()  # internal headers dropped from device input

    @property
    def model_rows_run(self) -> int:
        """Rows handed to any model of this stage: shed frames never add to it."""
        return sum(self.rows_by_variant.values())

    def serve(self, model: OnnxModel, prior: Line, canary: Canary | None) -> None:
        """Answer with `model` (and `canary`) from the next batch on; call between batches only."""
        if model is not self.model:
            self.model = model
            self.costs["primary"] = CostModel()
            self.costs["primary"].set_prior(prior)
        self.canary = canary

    def use_board(self, board: LatencyBoard) -> None:
        """Plan with the later stages' measured latency from `board` (the static shares until then)."""
        self.reserve = DownstreamReserve(self.pipeline, self.name, board)

    def current_budget(self, now: float | None = None) -> StageBudget:
        """This stage's budget with the downstream reserve as measured right now."""
        return self.budget.with_reserve(self.reserve.reserve_ms(now))

    def warm_cost_ms(self, batch: int) -> float:
        """Planned cost of a batch of `batch` on the primary path, from warm-up or measurements."""
        costs = self.planning_costs()
        return costs.overhead(batch) + costs.primary(batch)

    def hopeless_floor_ms(self) -> float:
        """Least time a frame needs even at an idle machine's cost (the warm-up priors) plus the
        reserve: a frame short of this is hopeless whatever the recent runs say. Skip-ahead uses
        it, not the admission floor: right after an overload the cost model's p99 still holds the
        overload's slow runs, and priced by those a fresh burst looked hopeless, so the loop
        looked up and skipped frames that had time (measured: a burst read ~0.5 s late)."""

        def idle_cost(key: str) -> float:
            prior = self.costs[key].prior
            return max(0.0, prior.at(1)) if prior is not None else 0.0

        cheapest = idle_cost("primary")
        if self.fallback is not None:
            cheapest = min(cheapest, idle_cost("fallback"))
        return idle_cost("overhead") + cheapest + self.reserve.reserve_ms()

    def planning_costs(self) -> Costs:
        """What a batch of n costs on each path, from the learned cost models."""
        primary = self.costs["primary"].cost_ms
        if self.gate is not None:
            gate = self.costs["gate"].cost_ms

            def primary_after_gate(n: int) -> float:
                return gate(n) + self.costs["primary"].cost_ms(n)

            primary = primary_after_gate
        return Costs(
            primary=primary,
            fallback=self.costs["fallback"].cost_ms if self.fallback is not None else None,
            overhead=self.costs["overhead"].cost_ms,
        )

    def warm_up(self, rounds: int = 3) -> None:
        """Run every model on zeros at batch 1 and the largest batch; the timings become the priors."""
        top = self.spec.batch.max_size
        for key, model in (("primary", self.model), ("fallback", self.fallback), ("gate", self.gate)):
            if model is None:
                continue
            timings: dict[int, float] = {}
            for n in (1, top):
                feed = {self.input_name: _zeros(model, n)}
                runs = []
                for _ in range(rounds + 1):
                    started = time.perf_counter()
                    model.run(feed)
                    runs.append((time.perf_counter() - started) * 1000.0)
                timings[n] = float(np.median(runs[1:]))
            per_item = max(0.0, (timings[top] - timings[1]) / (top - 1)) if top > 1 else 0.0
            intercept = max(0.0, timings[1] - per_item)
            # A cold prior is a guess: plan with twice the warm-up median until real runs replace it.
            self.costs[key].set_prior(Line(intercept, per_item, tail_ms=intercept + per_item))
        self.costs["overhead"].set_prior(Line(0.1, 0.05, tail_ms=0.2))

    def validate(self, env: Envelope) -> np.ndarray:
        """The decoded input of a member, or PoisonMessage: header defects first, then `decode`."""
        if self.reads_device_input and env.internal:
            self._drop_internal(env)
        for defect in (env.defect, env.internal_defect):
            if defect is not None:
                raise defect
        return self.decode(env)

    def _drop_internal(self, env: Envelope) -> None:
        """Internal headers from a device mean nothing: drop them, count them, log each name once."""
        for name in env.distrust():
            if not self.untrusted[name]:
                event(log, "untrusted-header", logging.WARNING, stage=self.name, header=name, id=env.id)
            self.untrusted[name] += 1

    def decode(self, env: Envelope) -> np.ndarray:
        """One message's model input with a leading batch axis of 1; raises PoisonMessage."""
        return self.fit(codec.decode_tensor(env.payload, env.content_type))

    def fit(self, array: np.ndarray) -> np.ndarray:
        """`array` (batch axis of 1) if it fits the model's input; else BadDtype/BadShape/BadSamples."""
        # A batch must never promote or fail for one member (`!=` first: `.name` is slow).
        if array.dtype != self.input_dtype and array.dtype.name != self.input_dtype.name:
            raise BadDtype(f"tensor dtype {array.dtype.name}; {self.model.ref} takes {self.input_dtype.name}")
        want = self.model.input_shape(self.input_name)[1:]
        if (
            array.ndim != len(want) + 1
            or array.shape[0] != 1
            or any(w is not None and w != a for w, a in zip(want, array.shape[1:], strict=True))
        ):
            raise BadShape(f"tensor shape {array.shape} does not fit model input (1, {want})")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise BadSamples("tensor has NaN/Inf values")
        return array

    def encode(
        self, env: Envelope, row: Row, timing: StageTime, model: OnnxModel, status: Status
    ) -> Envelope:
        """The downstream envelope for one output row (each array keeps a batch axis of 1)."""
        payload, content_type = codec.encode_tensor(row[model.output_names[0]])
        return env.forward(payload, content_type, timing, status=status)

    def process(self, batch: list[Envelope], telemetry: Telemetry = NOOP) -> list[Outcome]:
        """Outcomes aligned with `batch`: shed → late, undecodable → dlq, the rest run."""
        started = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(batch)
        groups: dict[str, list[tuple[int, np.ndarray]]] = {"primary": [], "fallback": [], "candidate": []}
        canary = self.canary
        with telemetry.phase("decode", batch):
            # Validate every member first (cheap): a frame that can never run goes to the DLQ,
            # never to P.late, however loaded the stage is. Admission plans the valid ones only.
            arrays: dict[int, np.ndarray] = {}
            for i, env in enumerate(batch):
                try:
                    arrays[i] = self.validate(env)
                except PoisonMessage as exc:
                    outcomes[i] = Outcome("dlq", env, exc.reason, exc.detail)
            status: list[Status] = [worse(e.status, "ok") for e in batch]  # validate drops spoofed ones
            valid = sorted(arrays)
            now = self.clock()
            decided = plan(
                [batch[i].deadline for i in valid], now, self.current_budget(now), self.planning_costs()
            )
            route = {valid[j]: "primary" for j in decided.primary} | {
                valid[j]: "fallback" for j in decided.fallback
            }
            for s in decided.shed:
                i = valid[s.index]
                if self.pipeline.late_policy == "route":
                    outcomes[i] = Outcome("late", batch[i], s.reason, s.detail(self.name))
                    self.shed[s.reason] += 1
                else:
                    route[i] = "fallback" if self.fallback is not None else "primary"
                    status[i] = "late"
            for i in sorted(route):
                if route[i] == "fallback":
                    status[i] = worse(status[i], "degraded")
                groups[route[i]].append((i, arrays[i]))
            if canary is not None:
                groups["primary"], groups["candidate"] = canary.split(batch, groups["primary"])
        rows: dict[int, tuple[Row, OnnxModel]] = {}
        keys: dict[int, bytes] = {}
        if self.cache is not None and groups["primary"]:
            self._from_cache(batch, groups, rows, keys, telemetry)
        if self.gate is not None and groups["primary"]:
            self._gate(batch, groups, rows, telemetry)
        model_ms = 0.0
        runs = (
            ("fallback", self.fallback),
            ("primary", self.model),
            ("candidate", canary.model if canary else None),
        )
        for key, model in runs:
            members = groups[key]
            if not members or model is None:
                continue
            envs = [batch[i] for i, _ in members]
            t0 = time.perf_counter()
            with telemetry.phase("infer", envs, batch_size=len(members), model=model.identity, variant=key):
                out = self._run(model, [a for _, a in members])
            took = (time.perf_counter() - t0) * 1000.0
            model_ms += took
            self.costs[key].observe(len(members), took)
            self.rows_by_variant[key] += len(members)
            for (i, _), row in zip(members, out, strict=True):
                rows[i] = (row, model)
                if key == "primary" and i in keys and self.cache is not None:
                    self.cache.put(keys[i], owned(row))
        compute_ms = (time.perf_counter() - started) * 1000.0
        members_out = [batch[i] for i in rows]
        with telemetry.phase("encode", members_out):
            for i, (row, model) in sorted(rows.items()):
                env = batch[i]
                timing = StageTime(self.name, env.queue_ms(), compute_ms)
                outcomes[i] = Outcome("emit", self.encode(env, row, timing, model, status[i]))
        self._check_missed(batch, outcomes, status)
        if rows:
            total_ms = (time.perf_counter() - started) * 1000.0
            self.costs["overhead"].observe(len(rows), max(0.0, total_ms - model_ms))
        done = [o for o in outcomes if o is not None]
        for o in done:
            self.answered[o.envelope.status if o.kind == "emit" else o.kind] += 1
        telemetry.computed(batch, done, compute_ms)
        return done

    def _from_cache(
        self,
        batch: list[Envelope],
        groups: dict[str, list[tuple[int, np.ndarray]]],
        rows: dict[int, tuple[Row, OnnxModel]],
        keys: dict[int, bytes],
        telemetry: Telemetry,
    ) -> None:
        assert self.cache is not None
        misses: list[tuple[int, np.ndarray]] = []
        hits: list[Envelope] = []
        for i, array in groups["primary"]:
            env = batch[i]
            keys[i] = content_key(env.payload, env.content_type, self.model.identity)
            cached = self.cache.get(keys[i])
            if cached is None:
                misses.append((i, array))
            else:
                rows[i] = (cached, self.model)
                hits.append(env)
        with telemetry.phase("cache", hits, hits=len(hits), misses=len(misses)):
            groups["primary"] = misses

    def _gate(
        self,
        batch: list[Envelope],
        groups: dict[str, list[tuple[int, np.ndarray]]],
        rows: dict[int, tuple[Row, OnnxModel]],
        telemetry: Telemetry,
    ) -> None:
        """Early exit: the gate answers where its top probability reaches the threshold."""
        assert self.gate is not None and self.spec.gate is not None
        members = groups["primary"]
        envs = [batch[i] for i, _ in members]
        t0 = time.perf_counter()
        with telemetry.phase(
            "infer", envs, batch_size=len(members), model=self.gate.identity, variant="gate"
        ):
            out = self._run(self.gate, [a for _, a in members])
        self.costs["gate"].observe(len(members), (time.perf_counter() - t0) * 1000.0)
        self.rows_by_variant["gate"] += len(members)
        rest: list[tuple[int, np.ndarray]] = []
        for (i, array), row in zip(members, out, strict=True):
            if _top_probability(row[self.gate.output_names[0]]) >= self.spec.gate.threshold:
                rows[i] = (row, self.gate)
            else:
                rest.append((i, array))
        groups["primary"] = rest

    def _check_missed(
        self, batch: list[Envelope], outcomes: list[Outcome | None], status: list[Status]
    ) -> None:
        """A member that finished past its deadline is late, whatever the plan said."""
        now = self.clock()
        for i, outcome in enumerate(outcomes):
            if outcome is None or outcome.kind != "emit" or not batch[i].deadline.expired(now):
                continue
            over = -batch[i].deadline.remaining_ms(now)
            if self.pipeline.late_policy == "route":
                detail = f"overrun_ms={over:.1f}; finished {self.name} {over:.1f} ms after the deadline"
                outcomes[i] = Outcome("late", batch[i], reasons.MISSED, detail)
                self.shed[reasons.MISSED] += 1
            elif status[i] != "late":
                status[i] = "late"
                outcomes[i] = Outcome("emit", self._mark_late(outcome.envelope))

    def _mark_late(self, env: Envelope) -> Envelope:
        env.status = "late"
        return env

    def _run(self, model: OnnxModel, arrays: list[np.ndarray]) -> list[Row]:
        stacked = np.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]
        out = model.run({self.input_name: stacked})
        return [{k: v[i : i + 1] for k, v in out.items()} for i in range(len(arrays))]


_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int16)": np.int16,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
}


def _zeros(model: OnnxModel, n: int) -> np.ndarray:
    spec = model.session.get_inputs()[0]
    shape = [n, *(d if isinstance(d, int) else 1 for d in spec.shape[1:])]
    dtype = _ORT_DTYPES.get(spec.type, np.float32)
    return np.zeros(shape, dtype=dtype)


def _top_probability(logits: np.ndarray) -> float:
    z = logits.astype(np.float64).ravel()
    z = np.exp(z - z.max())
    return float(z.max() / z.sum())


class PreprocessStage(Stage):
    """Raw device frame → model features: the pipeline's frame decoder, then its ONNX graph."""

    name = "preprocess"

    def __init__(self, pipeline: PipelineSpec, model: OnnxModel, **kwargs: Any) -> None:
        super().__init__(pipeline, model, **kwargs)
        # Built once from the YAML, so a bad decoder reference or parameter fails at start.
        self.decode_frame = load_decoder(pipeline.frame)

    def decode(self, env: Envelope) -> np.ndarray:
        return self.fit(self.decode_frame(env.payload, env.content_type)[None, ...])


class InferStage(Stage):
    """Features → class logits with the serving model variant; stamps `ontime-model`."""

    name = "infer"

    def encode(
        self, env: Envelope, row: Row, timing: StageTime, model: OnnxModel, status: Status
    ) -> Envelope:
        payload, content_type = codec.encode_tensor(row[model.output_names[0]])
        return env.forward(payload, content_type, timing, model=model.identity, status=status)


class PostprocessStage(Stage):
    """Logits → calibrated probabilities, top-k and labels (an ONNX graph) → JSON result."""

    name = "postprocess"

    def encode(
        self, env: Envelope, row: Row, timing: StageTime, model: OnnxModel, status: Status
    ) -> Envelope:
        labels = model.card.labels
        top_index = row["top_index"][0]
        top_prob = row["top_prob"][0]
        top = [
            Score(label=labels[int(i)], score=float(np.clip(p, 0.0, 1.0)))
            for i, p in zip(top_index, top_prob, strict=True)
        ]
        name, version, sha = (env.model or "unknown:0:" + "0" * 64).split(":", 2)
        completed = int(self.clock())
        if completed > env.deadline.at_ms and self.pipeline.late_policy == "deliver":
            status = "late"
        result = Result(
            id=env.id,
            pipeline=self.pipeline.name,
            device=env.key.decode("utf-8", errors="replace") if env.key else None,
            label=top[0].label,
            score=top[0].score,
            top=top[: self.pipeline.top_k],
            status=status,
            model=ModelRef(name=name, version=version, sha256=sha),
            captured_ms=env.captured_ms,
            deadline_ms=int(env.deadline.at_ms),
            completed_ms=completed,
            stages=[
                StageLatency(stage=t.stage, queue_ms=t.queue_ms, compute_ms=t.compute_ms)
                for t in [*env.stage_times, timing]
            ],
        )
        payload = result.model_dump_json().encode()  # compact JSON, pydantic-core's encoder
        return env.forward(payload, codec.JSON_MIME, timing, status=status)


STAGES: dict[str, type[Stage]] = {s.name: s for s in (PreprocessStage, InferStage, PostprocessStage)}


def build_stage(
    pipeline: PipelineSpec,
    name: str,
    *,
    clock: Clock = now_ms,
    warm: bool = True,
    models_dir: Path = MODELS_DIR,
) -> Stage:
    """The stage `name` of `pipeline` with its models loaded (checksums verified) and warmed up."""
    spec = pipeline.stages[name]  # type: ignore[index]
    stage = STAGES[name](
        pipeline,
        OnnxModel(spec.model, threads=spec.threads, root=models_dir),
        fallback=OnnxModel(spec.fallback, threads=spec.threads, root=models_dir) if spec.fallback else None,
        gate=OnnxModel(spec.gate.model, threads=spec.threads, root=models_dir) if spec.gate else None,
        clock=clock,
    )
    if warm:
        stage.warm_up()
    return stage
