"""Hot swap without restart: follow the stages' model plans on `P.control`, swap between batches.

A plan (workers/loop/plans.py) names the version a stage serves and, for a canary, a candidate
and its share of devices. The worker's control follower (workers/loop/control.py) hands every
plan to this replica's `RolloutFollower`, which, on that thread, loads each new
version beside the serving one, verifies its checksum, its inputs and outputs against the
serving version's, and warms it up (workers/stages/candidate.py). The worker loop calls
`between_batches` at the top of each turn, when no batch is computing: a ready change is
swapped in there, all at once, so a batch is answered by one version from start to end. A
refused version changes nothing; the refusal is logged, counted, and acknowledged on the topic
(`ack/<stage>/<replica>`), where `ontime models rollout` waits for it.

At start the control follower reads the topic to its end, and the newest plan of each of this
worker's stages is prepared before the first batch, so a replica that starts after a rollout
serves the new version.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaException, Producer

from workers.config.settings import OntimeSettings
from workers.kafka.clients import replica_id
from workers.loop.plans import PLAN_PREFIX, Ack, Plan, ack_key
from workers.messages.deadline import now_ms
from workers.stages.canary import Canary
from workers.stages.candidate import Ready, Refused, prepare
from workers.stages.stage import Stage
from workers.telemetry.hooks import NOOP, Telemetry
from workers.telemetry.logs import event

log = logging.getLogger("ontime.rollout")


@dataclass(slots=True)
class Change:
    """A plan made ready: the prepared versions it needs (None: keep the one in place) or why not."""

    plan: Plan
    serving: Ready | None = None
    candidate: Ready | None = None
    refusal: Refused | None = None
    refused_ref: str = ""
    refused_role: str = ""


class RolloutFollower:
    """Takes model plans for `stages`, prepares them on the control thread, applies them between batches."""

    def __init__(
        self, settings: OntimeSettings, stages: Sequence[Stage], telemetry: Telemetry = NOOP
    ) -> None:
        self.topic = settings.pipeline.topics.control
        self.replica = replica_id(settings)
        self.root = settings.models_dir
        self.telemetry = telemetry
        self.stages = {s.name: s for s in stages}
        self.serving = {s.name: s.spec.model for s in stages}  # the ref each stage serves
        self.candidate: dict[str, str | None] = dict.fromkeys(self.stages)
        self._seen: dict[str, str] = {}  # stage → newest rollout id prepared
        self._ready: dict[str, Change] = {}
        self._lock = threading.Lock()
        self._catching_up = True
        self._newest: dict[str, Plan] = {}

    # -- the control follower's thread (workers/loop/control.py routes `model/` records here) ---
    def take(self, key: bytes, value: bytes) -> None:
        """A plan record: while catching up at start keep the newest per stage, then prepare it."""
        plan = self._plan_of(key, value)
        if plan is None:
            return
        if self._catching_up:
            self._newest[plan.stage] = plan
        else:
            self._prepare(plan)

    def caught_up(self) -> None:
        """Prepare each stage's newest plan before the first batch (the worker applies it)."""
        self._catching_up = False
        newest, self._newest = self._newest, {}
        for plan in newest.values():
            self._prepare(plan)

    def _plan_of(self, key: bytes, value: bytes) -> Plan | None:
        """A plan for one of this worker's stages, or None (other records, other stages, garbage)."""
        if not key.startswith(PLAN_PREFIX.encode()):
            return None
        try:
            plan = Plan.decode(value)
        except ValueError as exc:
            event(
                log,
                "rollout-plan-unreadable",
                logging.WARNING,
                key=key.decode(errors="replace"),
                error=str(exc),
            )
            return None
        return plan if plan.stage in self.stages else None

    def _prepare(self, plan: Plan) -> None:
        """Load, verify and warm up what `plan` needs beside what is serving; never touches serving."""
        if self._seen.get(plan.stage) == plan.rollout:
            return
        self._seen[plan.stage] = plan.rollout
        stage = self.stages[plan.stage]
        change = Change(plan)
        wanted = [("serving", plan.serving)]
        if plan.candidate is not None and plan.share > 0:
            wanted.append(("candidate", plan.candidate))
        for role, ref in wanted:
            if role == "serving" and ref == self.serving[plan.stage]:
                continue
            try:
                ready = prepare(
                    ref,
                    stage.model,
                    max_batch=stage.spec.batch.max_size,
                    threads=stage.spec.threads,
                    root=self.root,
                )
            except Refused as exc:
                change.refusal, change.refused_ref, change.refused_role = exc, ref, role
                break
            setattr(change, role, ready)
        with self._lock:
            self._ready[plan.stage] = change

    # -- the worker loop's thread ------------------------------------------------------------
    def pending(self) -> bool:
        """A prepared change waits to be applied (the loop then lets no batch overlap the next)."""
        return bool(self._ready)

    def between_batches(self, producer: Producer) -> None:
        """Apply the changes made ready since the last turn, and acknowledge each on the topic."""
        if not self._ready:
            return
        with self._lock:
            changes, self._ready = list(self._ready.values()), {}
        for change in changes:
            self._apply(change, producer)

    def _apply(self, change: Change, producer: Producer) -> None:
        plan = change.plan
        stage = self.stages[plan.stage]
        if change.refusal is not None:
            refusal = change.refusal
            event(
                log, "model-refused", logging.ERROR, stage=plan.stage, model=change.refused_ref,
                refused=refusal.code, reason=refusal.detail, serving=stage.model.identity[:64],
            )  # fmt: skip
            code, role = refusal.code, change.refused_role
            self.telemetry.model_changed(plan.stage, change.refused_ref, code, role)
            self._ack(producer, plan, False, refusal.code, refusal.detail)
            return
        if change.serving is None and plan.serving != self.serving[plan.stage]:
            self._seen.pop(plan.stage, None)  # a change applied since it was prepared: prepare again
            self._prepare(plan)
            return
        model = stage.model if change.serving is None else change.serving.model
        prior = stage.costs["primary"].line() if change.serving is None else change.serving.prior
        canary = None
        if change.candidate is not None:
            canary = Canary(change.candidate.model, plan.share)
            stage.costs["candidate"].set_prior(change.candidate.prior)
        elif plan.candidate is not None and plan.share > 0 and stage.canary is not None:
            canary = Canary(stage.canary.model, plan.share)  # same candidate, new share
        stage.serve(model, prior, canary)
        self.serving[plan.stage] = plan.serving
        self.candidate[plan.stage] = plan.candidate if canary is not None else None
        for role, ready in (("serving", change.serving), ("candidate", change.candidate)):
            if ready is not None:
                self.telemetry.model_changed(plan.stage, ready.model.ref, "applied", role)
        event(
            log, "model-serving", stage=plan.stage, model=model.identity[:64], rollout=plan.rollout,
            candidate=canary.model.identity[:64] if canary else None, share=canary.share if canary else 0.0,
        )  # fmt: skip
        self._ack(producer, plan, True)

    def _ack(self, producer: Producer, plan: Plan, ok: bool, refused: str = "", reason: str = "") -> None:
        stage = self.stages[plan.stage]
        canary = stage.canary
        ack = Ack(
            stage=plan.stage,
            replica=self.replica,
            rollout=plan.rollout,
            ok=ok,
            serving=stage.model.identity,
            at_ms=int(now_ms()),
            candidate=canary.model.identity if canary else None,
            share=canary.share if canary else 0.0,
            refused=refused,
            reason=reason[:1000],
        )
        try:
            producer.produce(self.topic, key=ack_key(plan.stage, self.replica), value=ack.encode())
            producer.poll(0)
        except (BufferError, KafkaException) as exc:  # the swap stands; only the answer is lost
            event(log, "rollout-ack-failed", logging.WARNING, stage=plan.stage, error=str(exc))
