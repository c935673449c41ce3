"""`StageWorker`: the Kafka loop of one stage (or an in-process chain of stages), at-least-once.

One turn of the loop, top to bottom:

    take what is fetched (work-conserving: an idle stage runs a lone frame at once; a batch is
    what piled up while the previous one ran) → skip a hopeless backlog head by seeking
    → envelopes (an unreadable record goes to the DLQ)
    → compute the stages: a cheap batch that emptied the fetch queue on this thread, any other
      in a worker thread while this thread keeps the consumer polled
    → produce every outcome (emit → next topic, late → P.late, dlq → P.dlq, key = device id)
    → go on to the next batch; deliveries are acknowledged in the background (when the next
      batch is already fetched, it starts computing before this one's outputs are produced)
    → store a batch's offsets once its outputs and every earlier batch's are delivered
      (workers/loop/deliveries.py; auto-commit commits stored offsets only)

A failed delivery stops the worker without storing, so nothing is ever lost; a crash anywhere
means the new owner of the partition reprocesses from the last committed offset (duplicates
are possible, loss is not). Partitions revoked while a batch is in flight are settled, their
deliveries awaited and committed inside the revoke callback, before the partition moves; lost
partitions are dropped without a commit. Every second the worker reports its stages' measured
latency on the control topic, and reads the other stages' reports (workers/loop/control.py).
Model versions rolled out on the same topic are swapped in at the top of a turn, between
batches (workers/loop/rollout.py).
A stage with `exactly_once` settles each batch as one Kafka transaction instead, and redoes it
from the committed offsets when the transaction fails (workers/loop/transactions.py).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from workers.config.settings import OntimeSettings
from workers.deadlines.batcher import DeadlineBatcher, record_deadline
from workers.deadlines.reserve import LATENCY_PREFIX, LatencyBoard
from workers.errors import OntimeError
from workers.kafka.clients import consumer_config, producer_config
from workers.kafka.refusals import KafkaRefused, refusal
from workers.loop.breaker import DlqBreaker
from workers.loop.control import BoardFeed, ControlFollower, LatencyPublisher, close_briefly
from workers.loop.deliveries import Ledger, Pending
from workers.loop.outputs import Output, reference, refused
from workers.loop.plans import PLAN_PREFIX
from workers.loop.rejoin import RejoinWatch
from workers.loop.resume import RESUME_WAIT_S, Delivered
from workers.loop.rollout import RolloutFollower
from workers.loop.skip import CHECK_EVERY_MS, Skip, find_skip, skip_headers
from workers.loop.transactions import Interrupted, Redo, Transactions, rewind_to_committed
from workers.messages import reasons
from workers.messages.deadline import Deadline, now_ms
from workers.messages.envelope import Envelope, Source
from workers.messages.headers import CONTENT_TYPE, ID, HeaderList, as_dict
from workers.messages.outcome import Outcome
from workers.stages.chain import Routed, check_order, run_chain
from workers.stages.stage import Stage
from workers.telemetry.hooks import NOOP, Telemetry
from workers.telemetry.logs import event

log = logging.getLogger("ontime.worker")

TP = tuple[str, int]

# A batch that computes longer than this gets its partitions paused and the consumer polled
# while it runs. Not every batch: pausing purges librdkafka's prefetched records, and refetching
# them after every millisecond-long batch would cost more latency than it saves.
PAUSE_AFTER_S = 0.2
COMPUTE_POLL_S = 0.05
LAG_EVERY_S = 5.0
DEADLINE_SLICE_MS = 2.0  # how often a deadline-batched take re-checks its close time
# A batch that emptied the fetch queue and is predicted to compute in less than this runs on the
# loop thread: handing it to the compute thread and back (two wake-ups, the GIL passed twice) cost
# more CPU than the models of a one-frame batch (profiled at steady load, docs/benchmarks.md). A
# full batch means more is waiting: it computes on the compute thread while the loop takes the next.
INLINE_MS = 2.0
MAX_UNSETTLED_BATCHES = 8  # produced batches awaiting acknowledgements before the loop waits
# Poll timeout while deliveries are outstanding, so their offsets are stored soon (auto-commit sends
# them once a second anyway); at 5 ms a lightly loaded stage woke 200 times a second for nothing.
IDLE_POLL_S = 0.05
HOLD_POLL_S = 0.1  # poll timeout while input is held (circuit open): serves rebalances only
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's message.max.bytes default


class DeliveryFailed(OntimeError):
    """A produced record was not acknowledged; its input offsets are not stored."""


class Abandoned(OntimeError):
    """A second stop signal cut the batch in hand short; its offsets are not stored."""


@dataclass(slots=True)
class InFlight:
    """The batch in hand: records taken, envelopes built, and the compute running on them."""

    records: list[Source]
    envelopes: list[Envelope]
    rejected: list[Routed]
    future: Future[list[Routed]] | None = None
    settled: bool = False
    lost: set[TP] = field(default_factory=set)
    skips: list[Skip] = field(default_factory=list)
    inline: bool = False  # computed on the loop thread (a cheap batch that emptied the fetch queue)


class StageWorker:
    """Consume the first stage's input topic, run `stages`, produce to the last stage's output."""

    def __init__(
        self,
        settings: OntimeSettings,
        stages: Sequence[Stage],
        telemetry: Telemetry = NOOP,
        *,
        lag_every_s: float = LAG_EVERY_S,
    ) -> None:
        if not stages:
            raise ValueError("a worker needs at least one stage")
        check_order([s.name for s in stages])
        self.settings = settings
        self.pipeline = settings.pipeline
        self.stages = list(stages)
        self.telemetry = telemetry
        self.name = ",".join(s.name for s in stages)
        first = stages[0].name
        self.input_topic = self.pipeline.input_topic(first)
        self.output_topic = self.pipeline.output_topic(stages[-1].name)
        self.batch = self.pipeline.stages[first].batch  # type: ignore[index]
        # Work-conserving by default; a configured wait closes by the members' deadlines.
        self._batcher: DeadlineBatcher[Message] | None = None
        if self.batch.max_wait_ms > 0:
            self._batcher = DeadlineBatcher(
                budget=stages[0].current_budget,
                costs=stages[0].planning_costs(),
                max_size=self.batch.max_size,
                max_wait_ms=self.batch.max_wait_ms,
            )
        # Measured downstream latency: published by every worker, read by those with stages after them.
        self.board = LatencyBoard()
        for stage in self.stages:
            stage.use_board(self.board)
        self._publisher = LatencyPublisher(settings, [s.name for s in stages], self.board)
        self.rollout = RolloutFollower(settings, self.stages, telemetry)  # model versions, hot swap
        self._control = ControlFollower(
            settings, {LATENCY_PREFIX: BoardFeed(self.board), PLAN_PREFIX: self.rollout}
        )
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._delivered = Delivered()  # at-least-once: what was delivered outlives a lost assignment
        self._consumer_conf = {**consumer_config(settings, first), "error_cb": self._on_error}
        self.consumer = Consumer(self._consumer_conf)
        self._rejoin = RejoinWatch(settings.worker.session_timeout_ms)
        produce_conf = producer_config(settings, first)
        self.transactional = "transactional.id" in produce_conf
        self._txn: Transactions | None = None
        self._in_callback = False
        self._txn_held = False
        self._moves = 0  # revocations and losses: a transaction open across one is redone
        self._fresh: list[TopicPartition] = []  # assigned since the last turn
        if self.transactional:  # workers/loop/transactions.py replaces it when it becomes unusable
            self._txn = Transactions(
                lambda: Producer({**produce_conf, "error_cb": self._on_txn_error}),
                stage=self.name,
                stopping=self._stopping,
                waiting=self._txn_waiting,
                keep_alive=self._txn_keep_alive,
            )
            self.producer = self._txn.producer
        else:
            self.producer = Producer({**produce_conf, "error_cb": self._on_error})
        # A transactional producer cannot send outside a transaction: reports get their own.
        self._control_producer = (
            Producer({**producer_config(settings, first, transactional=False), "error_cb": self._on_error})
            if self.transactional
            else self.producer
        )
        self._max_record_bytes = int(produce_conf.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
        self.breaker = DlqBreaker()
        self._holding: str | None = None
        self._refused_sources: set[tuple[str, int, int]] = set()  # transactional: dead-letter on retry
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ontime-{first}-compute")
        self._owned: set[TP] = set()
        self._early: list[Message] = []  # records poll() returned while a batch was computing
        self._in_flight: InFlight | None = None
        self._ledger = Ledger()
        self._stored: dict[TP, int] = {}
        self._skip_checked: dict[TP, float] = {}
        self._floor = (-CHECK_EVERY_MS, 0.0)  # (when, the first stage's hopeless floor in ms)
        self._last_seen_ms: dict[TP, int] = {}
        self._lag_due = 0.0
        self._lag_every_s = lag_every_s
        self._errors_logged: dict[int, float] = {}
        self.refused: KafkaRefused | None = None  # why Kafka refused us, if it did: run() raises it
        self.counts = {"emit": 0, "late": 0, "dlq": 0, reasons.SKIPPED: 0}
        self.revoked_mid_batch = 0  # revocations that had to settle the batch in hand first
        self.overlapped = 0  # batches that started computing before the previous one was produced
        self.inlined = 0  # batches computed on the loop thread

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until `stop()`; raises DeliveryFailed (after leaving the group) if Kafka refuses."""
        self._control.start()
        self.rollout.between_batches(self._control_producer)  # a version rolled out before we started
        if self.transactional:
            self._init_transactions()
        for stage in self.stages:
            self._publisher.seed(stage.name, stage.warm_cost_ms(self.batch.max_size))
            self.telemetry.started(self.pipeline.name, stage.name)
        event(
            log,
            "started",
            pipeline=self.pipeline.name,
            stage=self.name,
            input=self.input_topic,
            output=self.output_topic,
            group=self.pipeline.group_id(self.stages[0].name),
            models=",".join(s.model.identity[:48] for s in self.stages),
            exactly_once=self.transactional,
        )
        self._subscribe()
        try:
            while not self._stopping.is_set():
                self._turn()
        except Abandoned:
            event(log, "batch-abandoned", logging.WARNING, stage=self.name, reason="second stop signal")
        except DeliveryFailed as exc:
            event(log, "delivery-failed", logging.ERROR, stage=self.name, error=str(exc))
            raise
        finally:
            self._close()
        if self.refused is not None:
            raise self.refused

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def stop(self, hurry: bool = False) -> None:
        """Finish the batch in hand, then leave; `hurry` drops it undelivered and unstored instead."""
        if hurry:
            self._hurry.set()
        self._stopping.set()

    # -- one turn of the loop ----------------------------------------------------------------
    def _turn(self) -> None:
        self._housekeeping()
        self.rollout.between_batches(self._control_producer)  # no batch is computing here
        if self.breaker.open and not self.breaker.allows_probe():
            self._hold(self.breaker.reason)
            msg = self.consumer.poll(HOLD_POLL_S)  # paused: serves rebalance callbacks only
            if msg is not None:
                self._early.append(msg)
            return
        if self.breaker.open:
            self._resume_input()  # half-open: one batch decides
        records = self._take_records()
        self._report_lag(records)
        if not records:
            return
        batch: InFlight | None = self._begin(records)
        while batch is not None:
            batch = self._finish(batch)
            if batch is not None:  # a chain of overlapped batches still does a turn's chores
                self._housekeeping()

    def _housekeeping(self) -> None:
        """What every turn does besides the batch: new partitions follow the hold, deliveries, outage
        watch, latency reports."""
        self.telemetry.poll_turned()
        if self._fresh:
            self._match_hold()
        if len(self._ledger):
            self.producer.poll(0)  # serves the delivery reports that release stored offsets
        self._release_delivered()
        self._watch_outage()
        self._rejoin_if_stuck()
        self._publisher.maybe_publish(self._control_producer)

    def _begin(self, records: list[Message]) -> InFlight:
        """Skip what cannot make it, build the envelopes and start computing them (on the compute
        thread; a batch that runs inline waits for `_compute`)."""
        skips = self._skip_hopeless(records)
        batch = self._open([m for m in records if not _skipped(m, skips)])
        batch.skips = skips
        batch.inline = len(records) < self.batch.max_size and self._cheap(len(batch.envelopes))
        if batch.envelopes and not batch.inline:
            batch.future = self._pool.submit(run_chain, self.stages, batch.envelopes, self.telemetry)
        return batch

    def _cheap(self, n: int) -> bool:
        """Whether a batch of `n` is predicted to compute in under `INLINE_MS`."""
        predicted = 0.0
        for stage in self.stages:
            predicted += stage.costs["overhead"].predict_ms(n) + stage.costs["primary"].predict_ms(n)
        return predicted < INLINE_MS

    def _finish(self, batch: InFlight) -> InFlight | None:
        """Wait for `batch`'s compute, then produce its outcomes; returns the next batch, if any.

        Overlap: when records for the next batch are already fetched, the next batch starts
        computing *before* this one's outputs are produced, so the compute thread is not idle
        while this thread builds and sends records (the two share the GIL, but the models do not
        hold it). Offsets still go out strictly in batch order (the ledger). Never when a wait
        would be needed for the records, nor in a transaction (an aborted one rewinds to its
        first offset, which a batch already taken past it would not see), nor with the circuit
        open, a stop requested or a model swap waiting (it is applied at the top of a turn, when
        no batch computes).
        """
        self._in_flight = batch
        following: InFlight | None = None
        try:
            routed = self._compute(batch)
            if not batch.settled and self._may_overlap():
                more = self._take_fetched()  # a revoke callback here settles `batch` itself
                if more:
                    self._report_lag(more)
                    following = self._begin(more)
                    self.overlapped += following.future is not None
            if not batch.settled:  # a revoke callback may have settled it already
                self._settle(batch, routed)
        finally:
            self._in_flight = None
        self.breaker.record(r.outcome.reason if r.outcome.kind == "dlq" else None for r in routed)
        if self.breaker.open:
            event(log, "circuit-open", logging.ERROR, stage=self.name, reason=self.breaker.reason)
            self._hold(self.breaker.reason)
        elif self._holding is not None:
            self._resume_input()
        return following

    def _may_overlap(self) -> bool:
        return not (
            self.transactional
            or self._batcher is not None
            or self.breaker.open
            or self._holding is not None
            or self._stopping.is_set()
            or self.rollout.pending()  # a model swap waits for a turn with no batch computing
        )

    def _take_fetched(self) -> list[Message]:
        """The next batch from what is already fetched, without waiting; [] when nothing is."""
        size = self.batch.max_size
        taken, self._early = self._early[:size], self._early[size:]
        if len(taken) < size:
            taken += self.consumer.consume(num_messages=size - len(taken), timeout=0)
        return [m for m in taken if self._readable(m)]

    def _watch_outage(self) -> None:
        """Unacknowledged outputs older than `flush_timeout_s`: the broker is away. Hold the input
        (nothing new could be delivered anyway) and report not ready until deliveries flow again."""
        stuck_s = self._ledger.oldest_s()
        if stuck_s > self.settings.worker.flush_timeout_s:
            if self._holding is None or not self._holding.startswith("broker unreachable"):
                waiting = self._ledger.outputs_waiting()
                why = f"broker unreachable: {waiting} outputs unacknowledged for {stuck_s:.0f} s"
                event(log, "broker-outage", logging.WARNING, stage=self.name, reason=why)
                self._hold(why)
        elif (
            self._holding is not None
            and self._holding.startswith("broker unreachable")
            and not self.breaker.open
        ):
            self._resume_input()

    def _rejoin_if_stuck(self) -> None:
        """Every partition lost long ago and none back while the broker answers: a stuck group
        connection (workers/loop/rejoin.py); a fresh consumer rejoins the group."""
        if self._in_flight is not None or not self._rejoin.due(self.consumer, self.input_topic):
            return
        waited = self._rejoin.replaced()
        event(log, "consumer-replaced", logging.WARNING, stage=self.name, without_partitions_s=round(waited))
        stuck, self.consumer = self.consumer, Consumer(self._consumer_conf)
        close_briefly(stuck, f"ontime-{self.name}-stuck-close")
        self._early.clear()
        self._subscribe()

    def _hold(self, reason: str) -> None:
        """Stop taking input: pause every assigned partition and report not ready, saying why."""
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(assigned)
        if self._holding != reason:
            self._holding = reason
            self.telemetry.holding(reason)

    def _match_hold(self) -> None:
        """Newly assigned partitions follow the hold. librdkafka keeps a partition's pause flag
        across losing and regaining it: one paused during an outage, lost when the session
        expired, and assigned again after a resume that no longer saw it, stayed paused forever."""
        fresh, self._fresh = self._fresh, []
        mine = [tp for tp in fresh if (tp.topic, tp.partition) in self._owned]
        if not mine:
            return
        with contextlib.suppress(KafkaException):
            if self._holding is not None:
                self.consumer.pause(mine)
            else:
                self.consumer.resume(mine)

    def _resume_input(self) -> None:
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.resume(assigned)
        if self._holding is not None:
            event(log, "input-resumed", stage=self.name, after=self._holding)
            self._holding = None
            self.telemetry.holding(None)

    def _take_records(self) -> list[Message]:
        """Up to `batch.max_size` records: what is already fetched, waiting only for the first."""
        size = self.batch.max_size
        taken, self._early = self._early[:size], self._early[size:]
        if not taken:
            timeout = self.settings.worker.poll_timeout_ms / 1000.0
            first = self.consumer.poll(min(timeout, IDLE_POLL_S) if len(self._ledger) else timeout)
            if first is None:
                return []
            taken = [first]
        if self._batcher is not None:
            taken = self._fill_by_deadline(self._batcher, taken)
        elif len(taken) < size:
            taken += self.consumer.consume(num_messages=size - len(taken), timeout=0)
        return [m for m in taken if self._readable(m)]

    def _skip_hopeless(self, records: list[Message]) -> list[Skip]:
        """Seek past backlog heads that cannot make their deadlines; one late record per range."""
        if not self.pipeline.skip_ahead:
            return []
        now = now_ms()
        if now - self._floor[0] >= CHECK_EVERY_MS:  # as fresh as the skip checks themselves
            self._floor = (now, self.stages[0].hopeless_floor_ms())
        skips = find_skip(
            self.consumer,
            records,
            now=now,
            budget_ms=self.pipeline.budget_ms,
            skew_ms=self.pipeline.max_clock_skew_ms,
            need_ms=self._floor[1],
            checked=self._skip_checked,
        )
        for skip in skips:
            self.consumer.seek(TopicPartition(skip.topic, skip.partition, skip.end))
            self._early = [m for m in self._early if not _skipped(m, [skip])]
            event(
                log,
                reasons.SKIPPED,
                logging.DEBUG,
                stage=self.name,
                partition=skip.partition,
                frames=skip.count,
            )
        return skips

    def _fill_by_deadline(self, batcher: DeadlineBatcher[Message], taken: list[Message]) -> list[Message]:
        """Take more records until the batch is full or its most urgent member must start.

        Waits in short slices so a newly arrived, more urgent record can pull the close earlier.
        The stage sheds members that can no longer make it right before the run.
        """
        budget, skew = self.pipeline.budget_ms, self.pipeline.max_clock_skew_ms
        try:
            for msg in taken:
                batcher.add(msg, record_deadline(msg, budget, skew, now_ms()))
            while not batcher.due() and not batcher.full():
                wait_s = min(batcher.wait_ms(), DEADLINE_SLICE_MS) / 1000.0
                more = batcher.max_size - len(batcher)
                for msg in self.consumer.consume(num_messages=more, timeout=wait_s):
                    batcher.add(msg, record_deadline(msg, budget, skew, now_ms()))
        finally:
            taken = batcher.drain()
        return taken

    def _readable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            self._on_error(err)
        return False

    def _open(self, records: list[Message]) -> InFlight:
        """Envelopes of the records; a record no envelope can be built from goes to the DLQ."""
        taken = now_ms()
        sources: list[Source] = []
        envelopes: list[Envelope] = []
        rejected: list[Routed] = []
        first = self.stages[0].name
        for msg in records:
            try:
                env = Envelope.from_record(
                    msg,
                    budget_ms=self.pipeline.budget_ms,
                    skew_ms=self.pipeline.max_clock_skew_ms,
                    taken_ms=taken,
                )
            except Exception as exc:  # any header a device could garble: never crash on input
                env = _unreadable(msg, taken)
                rejected.append(
                    Routed(first, Outcome("dlq", env, reasons.POISON, f"unreadable record: {exc}"))
                )
            else:
                envelopes.append(env)
            assert env.source is not None
            sources.append(env.source)
            self._last_seen_ms[(env.source.topic, env.source.partition)] = env.source.timestamp_ms
        self.telemetry.taken(self.input_topic, envelopes)
        return InFlight(sources, envelopes, rejected)

    def _compute(self, batch: InFlight) -> list[Routed]:
        """Run the stages in the compute thread; poll the consumer if it takes long."""
        if not batch.envelopes:
            return list(batch.rejected)
        if batch.future is None and batch.inline:
            # Nothing else was fetched and the batch is cheap: handing it to the compute thread
            # and back would cost more than computing it (two thread wake-ups per batch). Kept as a
            # done future, so a revoke callback settles it like any other batch in hand.
            batch.future = Future()
            batch.future.set_result(run_chain(self.stages, batch.envelopes, self.telemetry))
            self.inlined += 1
        if batch.future is None:
            batch.future = self._pool.submit(run_chain, self.stages, batch.envelopes, self.telemetry)
        future = batch.future
        try:
            return [*batch.rejected, *future.result(timeout=PAUSE_AFTER_S)]
        except FutureTimeout:
            pass
        paused = self.consumer.assignment()
        if paused:
            self.consumer.pause(paused)
        event(
            log, "batch-slow", logging.DEBUG, stage=self.name, size=len(batch.envelopes), paused=len(paused)
        )
        try:
            while True:
                try:
                    return [*batch.rejected, *future.result(timeout=COMPUTE_POLL_S)]
                except FutureTimeout:
                    pass
                if self._hurry.is_set():
                    raise Abandoned("stop requested twice")
                # Serves rebalance callbacks and keeps max.poll.interval.ms from expiring.
                msg = self.consumer.poll(0)
                if msg is not None:
                    self._early.append(msg)
                self.telemetry.poll_turned()
        finally:
            keep = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            resume = [tp for tp in paused if (tp.topic, tp.partition) in keep]
            if resume:
                self.consumer.resume(resume)

    def _settle(self, batch: InFlight, routed: list[Routed]) -> None:
        """Produce the outcomes; their offsets are stored once they (and earlier ones) are delivered."""
        batch.settled = True
        gone = batch.lost | {
            (r.topic, r.partition) for r in batch.records if (r.topic, r.partition) not in self._owned
        }
        records = [r for r in batch.records if (r.topic, r.partition) not in gone]
        skipped_to = {
            (k.topic, k.partition): k.end for k in batch.skips if (k.topic, k.partition) not in gone
        }
        outputs, outcomes = self._outputs(batch, routed, gone)
        if self.transactional:
            self._settle_in_transaction(records, skipped_to, outputs, outcomes)
            return
        pending = self._ledger.open(records)
        pending.outcomes, pending.skipped_to = outcomes, skipped_to
        for output in outputs:
            self._produce(output, pending, may_refuse=True)
        self.producer.poll(0)
        self._release_delivered()
        while len(self._ledger) > MAX_UNSETTLED_BATCHES:
            self._await_deliveries(self.settings.worker.flush_timeout_s, one=True, ride_out=True)

    def _outputs(
        self, batch: InFlight, routed: list[Routed], gone: set[TP]
    ) -> tuple[list[Output], list[Outcome]]:
        """The records to produce, oversized ones already replaced by dead-letter references."""
        dlq = self.pipeline.topics.dlq
        outputs: list[Output] = []
        outcomes: list[Outcome] = []
        for item in routed:
            outcome, env = item.outcome, item.outcome.envelope
            if env.source is not None and (env.source.topic, env.source.partition) in gone:
                continue  # the partition's new owner reprocesses this record
            topic = self._topic_of(item)
            self.telemetry.producing(env, topic)  # a tracer injects its context into env.trace here
            value = env.payload if outcome.kind == "emit" or self._late_copies(item) else None
            reason = outcome.reason if outcome.kind == "dlq" else ""
            output = Output(topic, env.key, value, self._headers_of(item), env, item.stage, reason)
            src = env.source
            if output.size() > self._max_record_bytes or (
                src is not None and (src.topic, src.partition, src.offset) in self._refused_sources
            ):
                output = reference(
                    output, dlq, f"over the producer's limit of {self._max_record_bytes} bytes"
                )
                outcome = Outcome("dlq", env, output.reason, "record too large to produce; see P.dlq")
            outputs.append(output)
            outcomes.append(outcome)
            self.counts[outcome.kind] += 1
            if outcome.kind == "emit":
                self._measure(env)
        for skip in batch.skips:
            if (skip.topic, skip.partition) not in gone:
                headers = skip_headers(skip, self.stages[0].name)
                outputs.append(
                    Output(self.pipeline.topics.late, None, None, headers, stage=self.stages[0].name)
                )
                self.counts[reasons.SKIPPED] += skip.count
        return outputs, outcomes

    def _settle_in_transaction(
        self, records: list[Source], skipped_to: dict[TP, int], outputs: list[Output], outcomes: list[Outcome]
    ) -> None:
        """Exactly once: the outputs and the input offsets commit together, or not at all; a batch
        whose transaction failed is redone from the committed offsets (workers/loop/transactions.py)."""
        assert self._txn is not None
        pending = Pending(records)
        offsets = [TopicPartition(t, p, o) for (t, p), o in _next_offsets(records, skipped_to).items()]

        def produce(producer: Producer) -> None:
            self.producer = producer
            for output in outputs:
                self._produce(output, pending, may_refuse=True)

        try:
            moves = self._moves
            self._txn.run(
                produce, offsets, self.consumer.consumer_group_metadata, lambda: self._moves == moves
            )
        except Redo as redo:
            self.producer = self._txn.producer
            for output in pending.refused:  # the retry sends these as dead-letter references
                src = output.envelope.source if output.envelope is not None else None
                if src is not None:
                    self._refused_sources.add((src.topic, src.partition, src.offset))
            self._early = []  # taken past the committed offsets: read again after the rewind
            try:
                rewind_to_committed(self.consumer, self._txn_waiting, self._stopping)
            except Interrupted as exc:
                raise DeliveryFailed(str(exc)) from None
            self._txn_waiting(None)
            event(log, "batch-redone", logging.WARNING, stage=self.name, error=redo.error)
            return
        except Interrupted as exc:
            if self._hurry.is_set():
                raise Abandoned(str(exc)) from None
            raise DeliveryFailed(str(exc)) from None
        self.telemetry.settled(outcomes)

    def _txn_waiting(self, why: str | None) -> None:
        """The broker keeps a transactional call from completing: hold the input, not ready;
        `None`: it completed, take input again (unless the circuit breaker holds it)."""
        if why is not None:
            self._txn_held = True
            if self._in_callback:  # pausing from inside a rebalance callback is not allowed
                if self._holding != why:
                    self._holding = why
                    self.telemetry.holding(why)
                return
            self._hold(why)
        elif self._txn_held and not self._in_callback:
            self._txn_held = False
            if not self.breaker.open:
                self._resume_input()

    def _txn_keep_alive(self) -> None:
        """Between retries of a transactional call: serve rebalances, keep the group membership."""
        if self._in_callback:
            return  # poll() must not be called from inside a rebalance callback
        msg = self.consumer.poll(0)
        if msg is not None:
            self._early.append(msg)
        self.telemetry.poll_turned()

    def _late_copies(self, item: Routed) -> bool:
        """Dead letters always keep the payload (it is the evidence); late ones only when asked."""
        return item.outcome.kind == "dlq" or self.pipeline.late_payload == "copy"

    def _measure(self, env: Envelope) -> None:
        """Feed this worker's stages' per-frame latency (queue incl. hop + compute) to the reports."""
        now = now_ms()
        for t in env.stage_times[-len(self.stages) :]:
            self._publisher.observe(t.stage, now, t.queue_ms + t.compute_ms)

    def _release_delivered(self) -> None:
        """Store the offsets of every batch whose outputs, and all earlier ones', are delivered."""
        for pending, output in self._ledger.refused():
            why = "refused by the broker for its size or form"
            self._produce(reference(output, self.pipeline.topics.dlq, why), pending, may_refuse=False)
        released = self._ledger.ready(_raise_failed)
        for done in released:
            self._store(done.records, done.skipped_to)
            self.telemetry.settled(done.outcomes)
        if released:
            self._after_release(released)

    def _after_release(self, released: list[Pending]) -> None:
        """Remember what is delivered: it outlives a lost assignment (workers/loop/resume.py)."""
        for done in released:
            self._delivered.advance(_next_offsets(done.records, done.skipped_to))

    def _await_deliveries(self, timeout_s: float, *, one: bool = False, ride_out: bool = False) -> None:
        """Serve delivery reports until the ledger is empty (or one batch left it, with `one`).

        With `ride_out` (the loop itself waiting, not a revoke or a shutdown) a broker that does not
        acknowledge within `timeout_s` is an outage to wait out: the worker holds its input, reports
        not ready, keeps its group membership alive, and resumes when deliveries flow again.
        """
        deadline = time.monotonic() + timeout_s
        start = len(self._ledger)
        held = False
        while len(self._ledger) and not (one and len(self._ledger) < start):
            self.producer.poll(0.01)
            self._release_delivered()
            if self._hurry.is_set():
                raise Abandoned("stop requested twice while delivering")
            if time.monotonic() <= deadline:
                continue
            if not ride_out:
                raise DeliveryFailed(
                    f"{self._ledger.outputs_waiting()} records undelivered after {timeout_s} s"
                )
            if not held:
                held = True
                waiting = self._ledger.outputs_waiting()
                why = f"broker unreachable: {waiting} outputs unacknowledged for {timeout_s:.0f} s"
                event(log, "broker-outage", logging.WARNING, stage=self.name, reason=why)
                self._hold(why)
            msg = self.consumer.poll(0)  # keeps max.poll.interval.ms from expiring
            if msg is not None:
                self._early.append(msg)
            self.telemetry.poll_turned()
            if self._stopping.is_set():
                raise DeliveryFailed("stopped during a broker outage; unacknowledged outputs are redone")
        if held:
            self._resume_input()

    def _topic_of(self, item: Routed) -> str:
        kind = item.outcome.kind
        if kind == "emit":
            return self.output_topic
        return self.pipeline.topics.late if kind == "late" else self.pipeline.topics.dlq

    def _headers_of(self, item: Routed) -> HeaderList:
        """Late and dlq records keep the payload the stage received and say why and from where."""
        outcome = item.outcome
        if outcome.kind == "emit":
            return outcome.envelope.headers()
        event(
            log, outcome.kind, logging.DEBUG, stage=item.stage, id=outcome.envelope.id, reason=outcome.reason
        )
        return outcome.envelope.error_headers(item.stage, outcome.reason, outcome.detail)

    def _produce(self, output: Output, pending: Pending, *, may_refuse: bool) -> None:
        """Hand one record to librdkafka; one it refuses for its own bytes becomes a dead letter."""
        while True:
            try:
                self.producer.produce(
                    output.topic,
                    value=output.value,
                    key=output.key,
                    headers=output.headers,  # type: ignore[arg-type]
                    on_delivery=pending.report_for(output, may_refuse=may_refuse),
                )
                pending.waiting += 1
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                if self._hurry.is_set():
                    raise Abandoned("stop requested twice while the producer queue was full") from None
                self.producer.poll(0.05)
            except KafkaException as exc:
                if self.transactional and not refused(exc.args[0]):
                    raise  # workers/loop/transactions.py decides: retry, abort or a new producer
                if not (may_refuse and refused(exc.args[0])):
                    raise DeliveryFailed(f"cannot produce to {output.topic}: {exc.args[0].str()}") from None
                output = reference(output, self.pipeline.topics.dlq, exc.args[0].str())
                may_refuse = False

    def _store(self, records: list[Source], skipped_to: dict[TP, int] | None = None) -> None:
        """Store offset+1 of the newest settled record per partition (auto-commit sends them)."""
        newest = {tp: o for tp, o in _next_offsets(records, skipped_to or {}).items() if tp in self._owned}
        if not newest:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in newest.items()]
        try:
            self.consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:  # partition revoked in between: its new owner reprocesses
            event(log, "store-failed", logging.WARNING, stage=self.name, error=str(exc))
            return
        self._stored.update(newest)

    # -- rebalance callbacks (run inside poll/consume/close, on this thread) ------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:  # a replaced consumer closing on its own thread
            return
        if not self.transactional:
            self._resume_delivered(consumer, partitions)
        self._owned |= {(tp.topic, tp.partition) for tp in partitions}
        self._rejoin.assigned()  # in the group again (an empty assignment counts too)
        self._fresh += partitions  # paused or resumed to match the hold once assigned (_turn)
        event(log, "assigned", stage=self.name, partitions=_names(partitions), owned=len(self._owned))
        self.telemetry.assignment(sorted(self._owned))

    def _resume_delivered(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions this worker had before (lost in an outage): let the acknowledgements of their
        batches still in flight arrive, then start from what was delivered, not from the last
        commit that reached a coordinator (workers/loop/resume.py)."""
        mine = {(tp.topic, tp.partition) for tp in partitions}
        give_up = time.monotonic() + min(RESUME_WAIT_S, self.settings.worker.flush_timeout_s)
        while self._ledger.touches(mine) and time.monotonic() < give_up:
            self.producer.poll(0.01)
            self._release_delivered()
        self._delivered.resume(consumer, partitions, self.name)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Settle the batch in hand and commit before the revoked partitions move on."""
        if consumer is not self.consumer:  # a replaced consumer closing on its own thread
            return
        self._in_callback = True
        try:
            self._revoke(consumer, partitions)
        finally:
            self._in_callback = False

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._moves += 1
        if self._hurry.is_set():  # leaving at once: nothing in hand is delivered or committed
            self._forget(revoked)
            return
        batch = self._in_flight
        mid_batch = (
            batch is not None
            and not batch.settled
            and batch.future is not None
            and any((r.topic, r.partition) in revoked for r in batch.records)
        )
        if mid_batch:
            assert batch is not None and batch.future is not None
            self._settle(batch, [*batch.rejected, *self._result_of(batch.future)])
            self.revoked_mid_batch += 1
        # Every produced output of the revoked partitions must be acknowledged and its offset
        # stored before the commit below: the partition's next owner starts from there.
        self._await_deliveries(self.settings.worker.flush_timeout_s)
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._stored.items() if (t, p) in revoked]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                event(log, "commit-failed", logging.WARNING, stage=self.name, error=str(exc))
        self._forget(revoked)
        event(
            log,
            "revoked",
            stage=self.name,
            partitions=_names(partitions),
            owned=len(self._owned),
            mid_batch=mid_batch,
        )
        self.telemetry.assignment(sorted(self._owned))

    def _result_of(self, future: Future[list[Routed]]) -> list[Routed]:
        """The compute's result; a second stop signal stops waiting for it."""
        while True:
            try:
                return future.result(timeout=COMPUTE_POLL_S)
            except FutureTimeout:
                if self._hurry.is_set():
                    raise Abandoned("stop requested twice during a revocation") from None

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group moved on without us: nothing of these partitions may be stored any more."""
        if consumer is not self.consumer:  # a replaced consumer closing on its own thread
            return
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._moves += 1
        if self._in_flight is not None:
            self._in_flight.lost |= lost
        self._forget(lost)
        if not self._owned:
            self._rejoin.lost_everything()
        event(log, "lost", logging.WARNING, stage=self.name, partitions=_names(partitions))
        self.telemetry.assignment(sorted(self._owned))

    def _forget(self, partitions: set[TP]) -> None:
        self._owned -= partitions
        self._early = [m for m in self._early if _where(m)[0] not in partitions]
        for tp in partitions:
            self._stored.pop(tp, None)
            self._last_seen_ms.pop(tp, None)

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka's client-level errors: logged once per code and minute; fatal ones stop us."""
        if self._stop_if_refused(err):
            return
        if err.fatal():
            event(log, "kafka-fatal", logging.ERROR, stage=self.name, error=err.str())
            self.stop()
            return
        last = self._errors_logged.get(err.code(), 0.0)
        if time.monotonic() - last > 60.0:
            self._errors_logged[err.code()] = time.monotonic()
            event(log, "kafka-error", logging.WARNING, stage=self.name, error=err.str())

    def _on_txn_error(self, err: KafkaError) -> None:
        """The transactional producer's errors: a fatal one is recovered from (a new producer,
        workers/loop/transactions.py) at the next transactional call, not a reason to stop."""
        if self._stop_if_refused(err):
            return
        last = self._errors_logged.get(err.code(), 0.0)
        if time.monotonic() - last > 60.0:
            self._errors_logged[err.code()] = time.monotonic()
            event(log, "kafka-error", logging.WARNING, stage=self.name, error=err.str(), fatal=err.fatal())

    def _init_transactions(self) -> None:
        """Register this replica's transactional.id; a missing ACL raises KafkaRefused, not a traceback."""
        assert self._txn is not None
        try:
            self._txn.init()
        except Interrupted:  # stopped before the broker ever answered: run() leaves at once
            return
        except KafkaException as exc:
            why = refusal(exc.args[0], self.settings.kafka)
            if why is None:
                raise
            event(log, "kafka-refused", logging.ERROR, stage=self.name, error=str(why))
            raise why from None

    def _stop_if_refused(self, err: KafkaError) -> bool:
        """Authentication, TLS and ACL refusals never heal by retrying: stop, and run() raises."""
        why = refusal(err, self.settings.kafka)
        if why is None:
            return False
        if self.refused is None:
            self.refused = why
            event(log, "kafka-refused", logging.ERROR, stage=self.name, error=str(why))
        self.stop()
        return True

    # -- lag ---------------------------------------------------------------------------------
    def _report_lag(self, in_hand: list[Message]) -> None:
        """Every few seconds: lag per partition and the age of its oldest unsettled record.

        The age is exact for partitions with records in hand; for a partition with lag but
        nothing in hand it is bounded by the newest record taken from it (the next one is at
        most that old).
        """
        if type(self.telemetry).lag is Telemetry.lag or time.monotonic() < self._lag_due:
            return
        self._lag_due = time.monotonic() + self._lag_every_s
        oldest: dict[TP, tuple[int, int]] = {}
        for msg in [*in_hand, *self._early]:
            tp, offset = _where(msg)
            if tp not in oldest or offset < oldest[tp][0]:
                oldest[tp] = (offset, msg.timestamp()[1])
        now = now_ms()
        for part in self.consumer.assignment():
            key = (str(part.topic), int(part.partition))
            try:
                # Every fetch response carries the high watermark: read librdkafka's copy, and
                # ask the broker only for a partition not fetched yet.
                watermarks = self.consumer.get_watermark_offsets(part, cached=True)
                if not watermarks or watermarks[1] < 0:
                    watermarks = self.consumer.get_watermark_offsets(part, timeout=1.0, cached=False)
                (position,) = self.consumer.position([part])
            except KafkaException:
                continue
            high = watermarks[1] if watermarks else 0
            if key in oldest:
                next_offset, ts = oldest[key]
            else:
                next_offset, ts = int(position.offset), self._last_seen_ms.get(key, 0)
                if next_offset < 0:
                    next_offset = self._committed(part)
            lag = max(0, high - next_offset) if next_offset >= 0 else max(0, high)
            if lag == 0:
                age: float | None = 0.0
            else:
                age = max(0.0, now - ts) if ts > 0 else None
            self.telemetry.lag(key[0], key[1], lag, age)

    def _committed(self, tp: TopicPartition) -> int:
        try:
            (committed,) = self.consumer.committed([TopicPartition(tp.topic, tp.partition)], timeout=1.0)
        except KafkaException:
            return -1
        return int(committed.offset)

    # -- start and stop ----------------------------------------------------------------------
    def _close(self) -> None:
        """Commit what was stored, leave the group, and make sure the producer is empty."""
        try:
            if not self._hurry.is_set():
                try:
                    self._await_deliveries(self.settings.worker.flush_timeout_s)
                except DeliveryFailed as exc:  # stored offsets stay where delivery last succeeded
                    event(log, "delivery-failed", logging.ERROR, stage=self.name, error=str(exc))
            if self._stored and not self._hurry.is_set():
                offsets = [TopicPartition(t, p, o) for (t, p), o in self._stored.items()]
                try:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
                except KafkaException as exc:
                    event(log, "commit-failed", logging.WARNING, stage=self.name, error=str(exc))
            self.consumer.close()
        finally:
            if self._txn is not None:  # an open transaction (an interrupted batch) is aborted now
                self._txn.close_open()
            busy = self._txn is not None and self._txn.busy()
            left = self._flush(0.5 if self._hurry.is_set() or busy else self.settings.worker.flush_timeout_s)
            # Deliveries never time out by themselves (message.timeout.ms=0): what is still queued
            # now (a broker gone or refusing us) is dropped, its offsets unstored, redone later.
            # Otherwise closing would wait for it forever.
            for producer in {id(p): p for p in (self.producer, self._control_producer)}.values():
                if self._txn is not None and producer is self._txn.producer and self._txn.busy():
                    continue  # a hung librdkafka call is inside it (workers/loop/transactions.py)
                with contextlib.suppress(KafkaException):
                    producer.purge(in_queue=True, in_flight=True, blocking=False)
                    producer.flush(0)
                # Release the producer's connections now, not whenever this object is collected; a
                # transactional producer in a fatal state raises here (KafkaException, or SystemError
                # when its abort-on-close warning is an error), and we are leaving anyway.
                with contextlib.suppress(KafkaException, SystemError):
                    producer.close()
            self._pool.shutdown(wait=not self._hurry.is_set(), cancel_futures=True)
            self._control.stop()
            event(log, "stopped", stage=self.name, undelivered=left, **self.counts)
            self.telemetry.stopped()

    def _flush(self, timeout: float) -> int:
        """Records still queued after `timeout`; a producer in a fatal state (refused) fails to flush."""
        try:
            return int(self.producer.flush(timeout))
        except KafkaException as exc:
            event(log, "flush-failed", logging.WARNING, stage=self.name, error=str(exc))
            return len(self.producer)


def install_signal_handlers(worker: StageWorker) -> None:
    """SIGTERM/SIGINT: finish the batch in hand and leave; a second signal leaves at once."""
    received: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        hurry = len(received) > 1
        event(log, "stopping", stage=worker.name, signal=signal.Signals(signum).name, hurry=hurry)
        worker.stop(hurry=hurry)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _unreadable(msg: Message, taken_ms: float) -> Envelope:
    """The least envelope of a record whose headers could not be read, for its DLQ copy."""
    try:
        hd = as_dict(msg.headers())  # type: ignore[arg-type]
    except Exception:
        hd = {}
    ts = msg.timestamp()[1]
    (topic, partition), offset = _where(msg)
    return Envelope(
        id=hd.get(ID, ""),
        key=msg.key(),
        payload=msg.value(),
        content_type=hd.get(CONTENT_TYPE, ""),
        deadline=Deadline(0),
        captured_ms=None,
        taken_ms=taken_ms,
        source=Source(topic, partition, offset, int(ts) if ts > 0 else int(taken_ms)),
    )


def _raise_failed(pending: Pending) -> None:
    raise DeliveryFailed(f"{len(pending.failures)} records not delivered, first: {pending.failures[0]}")


def _next_offsets(records: list[Source], skipped_to: dict[TP, int]) -> dict[TP, int]:
    """Offset + 1 of the newest record per partition, or past a skipped range when later."""
    newest: dict[TP, int] = dict(skipped_to)
    for r in records:
        tp = (r.topic, r.partition)
        newest[tp] = max(newest.get(tp, -1), r.offset + 1)
    return newest


def _skipped(msg: Message, skips: list[Skip]) -> bool:
    (topic, partition), offset = _where(msg)
    return any(s.topic == topic and s.partition == partition and s.first <= offset < s.end for s in skips)


def _where(msg: Message) -> tuple[TP, int]:
    """(topic, partition) and offset of a consumed record."""
    return (str(msg.topic()), int(msg.partition() or 0)), int(msg.offset() or 0)


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions)
