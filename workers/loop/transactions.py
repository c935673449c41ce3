"""Exactly-once: one Kafka transaction per batch, and the recovery librdkafka documents for it.

A transaction is begin → produce the outputs → `send_offsets_to_transaction` → commit. What can
go wrong, and what this module does about it (librdkafka's `KafkaError` classes):

- **retriable** (`retriable()`: a timeout, the coordinator away or loading): the same call is
  made again, with backoff, for as long as it takes; the worker reports not ready meanwhile
  (`waiting`), so a broker outage of minutes is ridden out, not turned into a crash loop.
- **abortable** (`txn_requires_abort()`: a record not delivered, a message timed out while the
  broker was away, a rebalance fenced the offsets): abort, then the caller rewinds its consumer
  to the committed offsets and redoes the batch. Nothing of the aborted transaction is visible to
  a `read_committed` reader.
- **fatal** (`fatal()`: fenced, `INVALID_TXN_STATE` after the coordinator timed the transaction
  out during an outage), or an abort that itself fails for good: the producer is unusable. It is
  closed and a new one made with the same `transactional.id`; its `init_transactions` bumps the
  epoch (fencing any zombie of this replica and aborting whatever the old one left open). Then
  the caller rewinds and redoes, as after an abort.

Two more ways a transaction ends in a redo. A **rebalance** that revokes or loses partitions
while a call is being retried: the batch's offsets may no longer be ours to commit, so it is
aborted. And a **hung call**: librdkafka 2.16's `send_offsets_to_transaction` can block past its
timeout, forever, when the group coordinator went away (librdkafka issues #5456 and #5511, fixed
upstream after 2.16), and the other transactional calls have been seen to retry internally past
theirs. Every call runs in a helper thread; one that has not returned `HUNG_AFTER_S` after its
timeout gets its producer abandoned (closed by that thread if the call ever returns) and a new one
with the same id takes over, which fences the old.

Every error therefore ends in a committed batch or a redone batch; the worker stops only when it
is told to, or when Kafka refuses it for good (authorization: `refusal`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from workers.errors import OntimeError
from workers.telemetry.logs import event

log = logging.getLogger("ontime.transactions")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
CALL_TIMEOUT_S = 5.0  # each blocking transactional call; a retriable timeout is then retried
HUNG_AFTER_S = 10.0  # a call past its own timeout by this much is hung: the producer is replaced
SLICE_S = 0.05
SEEK_ATTEMPTS = 20
SEEK_RETRY_S = 0.25


class Interrupted(OntimeError):
    """A stop was requested while the broker was away: the open transaction is left to time out."""


class Redo(OntimeError):
    """The batch's transaction was aborted (or its producer replaced): rewind and redo it."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class _Hung(Exception):
    """A transactional call did not return long after its timeout (a librdkafka bug)."""


class _Moved(Exception):
    """Partitions were revoked or lost while the transaction was open."""


_Call = tuple[Future[object], Callable[..., object], tuple[object, ...]]


class _Helper:
    """One daemon thread running calls in order. Not a ThreadPoolExecutor: its threads are joined
    at interpreter exit, and one stuck in a hung librdkafka call would keep the process alive."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Future[object], Callable[..., object], tuple[object, ...]] | None
        ]
        self._queue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Callable[..., object], *args: object) -> Future[object]:
        future: Future[object] = Future()
        self._queue.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the waiting thread
                    future.set_exception(exc)


class Transactions:
    """The transactional producer of one replica, replaced whenever librdkafka says it is unusable.

    `make_producer` builds a producer with this replica's stable `transactional.id`; `waiting(why)`
    is told when the broker keeps a call from completing (`None` once it completed), and
    `keep_alive()` is called between retries (it polls the consumer: rebalances are served and
    `max.poll.interval.ms` does not expire). `stopping` ends any retry loop with `Interrupted`.
    """

    def __init__(
        self,
        make_producer: Callable[[], Producer],
        *,
        stage: str,
        stopping: threading.Event,
        waiting: Callable[[str | None], None],
        keep_alive: Callable[[], None],
    ) -> None:
        self._make = make_producer
        self.stage = stage
        self._stopping = stopping
        self._waiting = waiting
        self._keep_alive = keep_alive
        self.producer = make_producer()
        self.renewed = 0  # producers replaced after a fatal error
        self.aborted = 0  # transactions aborted (each batch redone)
        self._stalled = False
        self._helper = self._new_helper()
        self._valid: Callable[[], bool] = lambda: True
        self._last: Future[object] | None = None

    # -- one batch -------------------------------------------------------------------------------
    def run(
        self,
        produce: Callable[[Producer], None],
        offsets: Sequence[TopicPartition],
        group: Callable[[], object],
        valid: Callable[[], bool] = lambda: True,
    ) -> None:
        """Commit one batch (its outputs via `produce`, its input `offsets`) or raise `Redo`.

        `group` returns the consumer's group metadata, read at the moment the offsets are sent
        (a rebalance in between changes the generation, and the broker fences stale metadata);
        `valid` turns false when a rebalance took partitions away during the transaction.
        """
        self._valid = valid
        try:
            self._call(lambda p: p.begin_transaction(), "begin")
            produce(self.producer)
            if offsets:
                self._call(
                    lambda p: p.send_offsets_to_transaction(list(offsets), group(), CALL_TIMEOUT_S),
                    "send offsets",
                    moves_abort=True,
                )
            self._call(lambda p: p.commit_transaction(CALL_TIMEOUT_S), "commit")
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            self._recover(err)
            raise Redo(err.str()) from None
        except _Moved:
            self._recover(None)
            raise Redo("partitions revoked or lost during the transaction") from None
        except _Hung as hung:
            self._renew(None, abandon=True)
            raise Redo(f"transaction {hung} hung for {HUNG_AFTER_S:g} s past its timeout") from None
        finally:
            self._valid = lambda: True

    def init(self) -> None:
        """`init_transactions`, retried while the broker is away (a producer whose call hangs is
        replaced). Other errors are raised (the caller turns an authorization refusal into a
        clear stop)."""
        try:
            self._call(lambda p: p.init_transactions(CALL_TIMEOUT_S), "init")
        except _Hung:
            self._renew(None, abandon=True)

    def close_open(self) -> None:
        """Leaving: abort a transaction still open (best effort; the coordinator times it out)."""
        if self.busy():
            return  # a hung call is still inside it: leave it alone, the process is leaving
        with contextlib.suppress(Exception):
            self.producer.abort_transaction(1.0)
        self._helper.shutdown()

    def busy(self) -> bool:
        """A guarded call is still running inside the current producer (do not close it)."""
        return self._last is not None and not self._last.done()

    # -- recovery ----------------------------------------------------------------------------------
    def _recover(self, err: KafkaError | None) -> None:
        """After a failed transaction: abort it unless the producer is unusable (fatal), and
        replace the producer when the abort fails too (e.g. INVALID_TXN_STATE: the coordinator
        already aborted it while the broker was out of reach)."""
        if err is None or not err.fatal():
            try:
                self._call(lambda p: p.abort_transaction(CALL_TIMEOUT_S), "abort")
            except KafkaException as exc:
                event(log, "abort-failed", logging.WARNING, stage=self.stage, error=exc.args[0].str())
                self._renew(exc.args[0])
            except _Hung:
                self._renew(None, abandon=True)
            else:
                self.aborted += 1
                why = err.str() if err is not None else "partitions moved"
                event(log, "transaction-aborted", logging.WARNING, stage=self.stage, error=why)
            return
        self._renew(err)

    def _renew(self, err: KafkaError | None, *, abandon: bool = False) -> None:
        """Close the unusable producer; a new one with the same id fences what the old left open.

        `abandon`: a call of the helper thread is still inside the old producer; that thread
        closes it if the call ever returns, and a fresh helper serves the new producer."""
        why = err.str() if err is not None else "a transactional call hung"
        fatal = err.fatal() if err is not None else False
        event(log, "producer-renewed", logging.WARNING, stage=self.stage, error=why, fatal=fatal)
        if abandon:
            self._abandon()
        else:
            _close_quietly(self.producer)
        backoff = BACKOFF_FIRST_S
        while True:
            self.producer = self._make()
            try:  # retries while retriable; what it raises needs yet another producer
                self._call(lambda p: p.init_transactions(CALL_TIMEOUT_S), "init")
            except _Hung:
                event(log, "producer-renewed", logging.WARNING, stage=self.stage, error="init hung")
                self._abandon()
                continue
            except KafkaException as exc:
                event(log, "init-failed", logging.WARNING, stage=self.stage, error=exc.args[0].str())
                with contextlib.suppress(KafkaException):
                    self.producer.close()
                self._pause(backoff, f"transactional producer cannot start: {exc.args[0].str()}")
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self.renewed += 1
            return

    def _call(
        self,
        call: Callable[[Producer], object],
        what: str,
        *,
        moves_abort: bool = False,
    ) -> None:
        """Make a transactional call, again and again while its error is retriable. It runs in the
        helper thread and is given up (`_Hung`) `HUNG_AFTER_S` past its own timeout;
        `moves_abort` gives up (`_Moved`) when a rebalance took partitions meanwhile. (Not for a
        commit: offsets already sent are fenced by the broker, and a commit that timed out must
        be resumed, librdkafka refuses an abort in between.)"""
        backoff = BACKOFF_FIRST_S
        while True:
            try:
                self._guarded(call, what)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not err.retriable() or err.fatal() or err.txn_requires_abort():
                    raise
                self._pause(backoff, f"broker unreachable: transaction {what} failed: {err.str()}")
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                if moves_abort and not self._valid():
                    raise _Moved() from None
                continue
            if self._stalled:
                self._stalled = False
                self._waiting(None)
            return

    def _guarded(self, call: Callable[[Producer], object], what: str) -> None:
        """`call` in the helper thread; this thread keeps the consumer polled while it waits."""
        future = self._helper.submit(call, self.producer)
        self._last = future
        hung_at = time.monotonic() + CALL_TIMEOUT_S + HUNG_AFTER_S
        while True:
            try:
                future.result(timeout=SLICE_S)
                return
            except FutureTimeout:
                pass
            if time.monotonic() > hung_at:
                raise _Hung(what)
            if self._stopping.is_set():
                raise Interrupted("stopped while a transactional call was waiting for the broker")
            self._keep_alive()

    def _abandon(self) -> None:
        """Leave the producer to the helper thread its hung call is in: closed if it returns."""
        self._helper.submit(_close_quietly, self.producer)  # queued behind the hung call
        self._helper.shutdown()
        self._helper, self._last = self._new_helper(), None

    def _new_helper(self) -> _Helper:
        return _Helper(f"ontime-{self.stage}-txn")

    def _pause(self, seconds: float, why: str) -> None:
        if not self._stalled:
            self._stalled = True
            event(log, "transaction-stalled", logging.WARNING, stage=self.stage, reason=why)
            self._waiting(why)
        if self._stopping.is_set():
            raise Interrupted(f"stopped while waiting for the broker ({why})")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._keep_alive()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))


def _close_quietly(producer: Producer) -> None:
    """Drop what an unusable producer still holds and release its connections. Anything it
    raises is ignored: it is being thrown away (confluent-kafka 2.16 can even raise SystemError
    from `close()` when its own abort-on-close warning is turned into an error)."""
    with contextlib.suppress(Exception):
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(0)
    with contextlib.suppress(Exception):
        producer.close()


def rewind_to_committed(consumer: Consumer, pause: Callable[[str], None], stopping: threading.Event) -> None:
    """Seek every assigned partition back to its committed offset (from its beginning when it has
    none: `auto.offset.reset=earliest`), asking the broker again while it is away."""
    backoff = BACKOFF_FIRST_S
    while True:
        assigned = consumer.assignment()
        if not assigned:
            return
        try:
            committed = consumer.committed(assigned, timeout=CALL_TIMEOUT_S)
            failed = next((tp.error for tp in committed if tp.error is not None), None)
        except KafkaException as exc:
            failed = exc.args[0]
        if failed is None:
            break
        if stopping.is_set():
            raise Interrupted("stopped while rewinding to the committed offsets")
        pause(f"broker unreachable: committed offsets unavailable: {failed.str()}")
        time.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)
    for tp in committed:
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        for attempt in range(SEEK_ATTEMPTS):
            if (tp.topic, tp.partition) not in {(a.topic, a.partition) for a in consumer.assignment()}:
                break  # revoked in between: its new owner starts at the committed offset
            try:
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
                break
            except KafkaException as exc:  # e.g. the partition's fetcher busy with a leader change
                event(
                    log,
                    "rewind-seek-failed",
                    logging.WARNING,
                    partition=f"{tp.topic}[{tp.partition}]",
                    offset=offset,
                    attempt=attempt + 1,
                    error=exc.args[0].str(),
                )
                time.sleep(SEEK_RETRY_S)
        else:
            # Going on from the old position would skip the aborted batch: lose it. Stopping is
            # safe: the replacement (or this worker, restarted) starts at the committed offsets.
            raise Interrupted(f"cannot rewind {tp.topic}[{tp.partition}] to {offset} after an aborted batch")
