"""The transaction recovery rules, with librdkafka's own error objects and a scripted producer.

The real broker proves the recovery end to end (tests/integration/test_eos_broker_restart.py);
here each rule is pinned down on its own, including the ones a live broker produces only by luck
(an abort that fails, a call that hangs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from workers.loop import transactions
from workers.loop.transactions import Interrupted, Redo, Transactions

OFFSETS = [TopicPartition("t.raw", 0, 10)]


def _error(code: int, *, fatal: bool = False, retriable: bool = False, abort: bool = False) -> KafkaException:
    return KafkaException(
        KafkaError(code, "scripted", fatal=fatal, retriable=retriable, txn_requires_abort=abort)
    )


class Scripted:
    """A producer whose transactional calls raise what the test scripted, in order, then succeed."""

    def __init__(self, script: dict[str, list[Any]]) -> None:
        self.script = script
        self.calls: list[str] = []
        self.closed = False

    def _next(self, name: str) -> None:
        self.calls.append(name)
        queue = self.script.get(name, [])
        if queue:
            item = queue.pop(0)
            if isinstance(item, BaseException):
                raise item
            if callable(item):
                item()

    def init_transactions(self, timeout: float) -> None:
        self._next("init")

    def begin_transaction(self) -> None:
        self._next("begin")

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        self._next("send_offsets")

    def commit_transaction(self, timeout: float) -> None:
        self._next("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._next("abort")

    def purge(self, **_: Any) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


class Harness:
    def __init__(self, *scripts: dict[str, list[Any]]) -> None:
        self.producers = [Scripted(s) for s in scripts]
        self.made = 0
        self.waiting: list[str | None] = []
        self.stopping = threading.Event()
        self.txn = Transactions(
            self._make,
            stage="infer",
            stopping=self.stopping,
            waiting=self.waiting.append,
            keep_alive=lambda: None,
        )

    def _make(self) -> Any:
        producer = self.producers[self.made]
        self.made += 1
        return producer

    def run(self, valid: Callable[[], bool] = lambda: True) -> None:
        self.txn.run(lambda p: None, OFFSETS, lambda: object(), valid)


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "BACKOFF_FIRST_S", 0.001)
    monkeypatch.setattr(transactions, "BACKOFF_MAX_S", 0.002)


def test_a_clean_batch_is_begin_send_offsets_commit() -> None:
    h = Harness({})
    h.run()
    assert h.producers[0].calls == ["begin", "send_offsets", "commit"]
    assert h.waiting == []


def test_a_retriable_commit_is_resumed_and_the_stall_reported_then_cleared() -> None:
    h = Harness({"commit": [_error(KafkaError._TIMED_OUT, retriable=True)] * 3})
    h.run()
    assert h.producers[0].calls == ["begin", "send_offsets", "commit", "commit", "commit", "commit"]
    assert len(h.waiting) == 2 and h.waiting[0] and h.waiting[0].startswith("broker unreachable")
    assert h.waiting[1] is None  # ready again


def test_an_abortable_error_aborts_and_asks_for_a_redo_with_the_same_producer() -> None:
    h = Harness({"commit": [_error(KafkaError._MSG_TIMED_OUT, abort=True)]})
    with pytest.raises(Redo):
        h.run()
    assert h.producers[0].calls[-1] == "abort"
    assert h.made == 1 and h.txn.aborted == 1 and h.txn.renewed == 0


def test_a_fatal_error_replaces_the_producer_with_one_that_inits_again() -> None:
    fenced = _error(KafkaError.INVALID_TXN_STATE, fatal=True)
    h = Harness({"commit": [fenced]}, {})
    with pytest.raises(Redo):
        h.run()
    old, new = h.producers
    assert "abort" not in old.calls and old.closed
    assert new.calls == ["init"]  # init_transactions fences whatever the old one left open
    assert h.txn.producer is new and h.txn.renewed == 1
    h.run()  # and the redo goes through the new producer
    assert new.calls == ["init", "begin", "send_offsets", "commit"]


def test_an_abort_that_fails_replaces_the_producer() -> None:
    h = Harness(
        {
            "commit": [_error(KafkaError._MSG_TIMED_OUT, abort=True)],
            "abort": [_error(KafkaError.INVALID_TXN_STATE, fatal=True)],
        },
        {},
    )
    with pytest.raises(Redo):
        h.run()
    assert h.txn.producer is h.producers[1] and h.txn.renewed == 1


def test_a_new_producer_that_cannot_start_is_retried_until_one_does() -> None:
    fatal = _error(KafkaError._FATAL, fatal=True)
    h = Harness({"begin": [fatal]}, {"init": [_error(KafkaError._STATE)]}, {})
    with pytest.raises(Redo):
        h.run()
    assert h.made == 3 and h.txn.producer is h.producers[2]


def test_partitions_moved_while_offsets_could_not_be_sent_abort_the_batch() -> None:
    h = Harness({"send_offsets": [_error(KafkaError._TIMED_OUT, retriable=True)]})
    with pytest.raises(Redo, match="revoked or lost"):
        h.run(valid=lambda: False)
    assert h.producers[0].calls == ["begin", "send_offsets", "abort"]


def test_a_stop_during_an_outage_interrupts_the_retries() -> None:
    h = Harness({"commit": [_error(KafkaError._TIMED_OUT, retriable=True)] * 1000})
    h.stopping.set()
    with pytest.raises(Interrupted):
        h.run()


def test_a_hung_send_offsets_abandons_the_producer_and_closes_it_when_the_call_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transactions, "CALL_TIMEOUT_S", 0.0)
    monkeypatch.setattr(transactions, "HUNG_AFTER_S", 0.2)
    release = threading.Event()
    h = Harness({"send_offsets": [lambda: release.wait(30)]}, {})
    with pytest.raises(Redo, match="hung"):
        h.run()
    old, new = h.producers
    assert h.txn.producer is new and not old.closed  # the hung call is still inside it
    release.set()
    for _ in range(200):
        if old.closed:
            break
        threading.Event().wait(0.01)
    assert old.closed
