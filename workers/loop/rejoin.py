"""A consumer that lost its partitions and never gets any back is replaced by a fresh one.

After a broker froze (SIGSTOP for 30 s) librdkafka sometimes left a stage consumer's
group-coordinator connection stuck: its session expired, its partitions were lost, and when the
broker came back the other stages rejoined within seconds while this one queued its join
requests on a connection that never sent them, for good (1 of 2 runs of `ontime bench faults
--faults freeze-broker`; docs/reliability.md). Nothing in the client reports that state, so the
worker watches for its symptom: every partition lost, no assignment since for `after_s`, and the
broker answering metadata requests for a whole session timeout (a consumer that is not stuck
rejoins within seconds of the broker's return: a long outage alone is no reason). Then it
closes that consumer (on a daemon thread: a close can hang on the same connection) and
subscribes a new one; the new member starts where the
delivered offsets say (workers/loop/resume.py), so nothing is lost or redone beyond a batch.

A replica with no partitions because the group has more members than partitions is not
stuck: it went through an assignment (possibly empty) after it joined, which resets the watch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException

REJOIN_MIN_S = 30.0  # never sooner than this after the loss (a broker restart takes seconds)
METADATA_TIMEOUT_S = 1.0
PROBE_EVERY_S = 1.0  # a metadata request at most this often while the watch is due to look


class RejoinWatch:
    """Remembers when the worker was left without partitions, and says when to start afresh."""

    def __init__(self, session_timeout_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = max(REJOIN_MIN_S, 3 * session_timeout_ms / 1000.0)
        self.grace_s = session_timeout_ms / 1000.0
        self._clock = clock
        self._lost_at: float | None = None
        self._answering_since: float | None = None
        self._probed_at = -PROBE_EVERY_S
        self._answering = False
        self.rejoins = 0

    def lost_everything(self) -> None:
        if self._lost_at is None:
            self._lost_at = self._clock()

    def assigned(self) -> None:
        self._lost_at = self._answering_since = None

    def due(self, consumer: Consumer, topic: str) -> bool:
        """The consumer has waited `after_s` for partitions, and the broker has answered for
        `grace_s` of that wait without the group taking this consumer back."""
        now = self._clock()
        if self._lost_at is None or now - self._lost_at < self.after_s:
            return False
        if now - self._probed_at >= PROBE_EVERY_S:
            self._probed_at = now
            try:
                consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
                self._answering = True
            except KafkaException:  # the broker is still away: a new consumer would not fare better
                self._answering = False
        if not self._answering:
            self._answering_since = None
            return False
        if self._answering_since is None:
            self._answering_since = now
        return now - self._answering_since >= self.grace_s

    def replaced(self) -> float:
        """A fresh consumer was subscribed: give it the same time. Returns how long we waited."""
        now = self._clock()
        waited = now - (self._lost_at if self._lost_at is not None else now)
        self._lost_at, self._answering_since, self._answering = now, None, False
        self.rejoins += 1
        return waited
