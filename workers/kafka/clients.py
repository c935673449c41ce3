"""librdkafka configuration of a stage worker's consumer and producer.

The keys that make the worker at-least-once are set last, so an `extra` escape-hatch key from
the settings cannot switch them off: offsets are *stored* by the worker only after the batch's
outputs are delivered (`enable.auto.offset.store=false`), and auto-commit commits only stored
offsets. The producer is idempotent with `acks=all`, so a retried send never duplicates.
"""

from __future__ import annotations

import os
import socket

from workers.config.settings import OntimeSettings

ConfigDict = dict[str, str | int | float | bool]

# Only the classic group protocol knows these; with KIP-848 the broker assigns partitions and
# owns the session timeout, and librdkafka refuses them.
_CLASSIC_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")

AUTO_COMMIT_INTERVAL_MS = 1000
# The broker answers a fetch as soon as one byte is there (fetch.min.bytes=1), so this bounds only
# how long an *empty* fetch waits: it is the idle poll rate. At 5 ms each idle stage sent 200
# fetches a second (~10 CPU-ms/s per worker, more in the broker). A partition that joins a fetch
# already in flight (after a resume or a seek) waits at most this long.
FETCH_WAIT_MAX_MS = 25
# After the local fetch queue went over its limits (an overload backlog of 32 KB frames does),
# librdkafka postpones a partition's next fetch by this much; its default of 1000 ms left a burst
# arriving two seconds after an overload unread for ~500 ms, so all of it expired (measured).
FETCH_QUEUE_BACKOFF_MS = 10


def consumer_config(settings: OntimeSettings, stage: str) -> ConfigDict:
    """Consumer of `stage`'s input topic in the stage's own group (`ontime.P.<stage>`)."""
    worker = settings.worker
    conf: ConfigDict = {
        "client.id": f"ontime-{settings.pipeline.name}-{stage}",
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": worker.max_poll_interval_ms,
        "session.timeout.ms": worker.session_timeout_ms,
        # Three heartbeats per session: one lost to a hiccup does not cost the partitions.
        "heartbeat.interval.ms": min(worker.heartbeat_interval_ms, worker.session_timeout_ms // 3),
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "auto.commit.interval.ms": AUTO_COMMIT_INTERVAL_MS,
    }
    conf.update(settings.kafka.as_librdkafka_dict())
    conf.update(
        {
            "group.id": settings.pipeline.group_id(stage),
            "group.protocol": settings.kafka.group_protocol,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
        }
    )
    if settings.kafka.group_instance_id:
        conf["group.instance.id"] = settings.kafka.group_instance_id
    if settings.kafka.group_protocol == "consumer":
        for key in _CLASSIC_ONLY:
            conf.pop(key, None)
    return conf


def producer_config(settings: OntimeSettings, stage: str, *, transactional: bool = True) -> ConfigDict:
    """Idempotent producer of a stage's outputs (results, late and dead letters).

    Deliveries never time out by themselves (`message.timeout.ms=0`): during a broker outage the
    worker holds its input and waits (workers/loop/worker.py). A stage with `exactly_once` gets a
    transactional producer with one stable `transactional.id` per replica (KIP-447: fencing is by
    the consumer group's generation, so one id per replica, not per partition, is enough).
    """
    conf: ConfigDict = {
        "client.id": f"ontime-{settings.pipeline.name}-{stage}-producer",
        "linger.ms": 0,  # a frame never waits for company on its way to the next stage
        "compression.type": "lz4",
        "message.timeout.ms": 0,
    }
    conf.update(settings.kafka.as_librdkafka_dict())
    conf.update({"enable.idempotence": True, "acks": "all"})
    spec = settings.pipeline.stages.get(stage)  # type: ignore[call-overload]
    if transactional and spec is not None and spec.exactly_once:
        timeout = settings.worker.transaction_timeout_ms
        conf.update(
            {
                "transactional.id": f"ontime.{settings.pipeline.name}.{stage}.{replica_id(settings)}",
                "transaction.timeout.ms": timeout,
                "message.timeout.ms": timeout,
            }
        )
    return conf


def replica_id(settings: OntimeSettings) -> str:
    """Who this worker is among its stage's replicas: the static member id when set (a pod name,
    stable across restarts), else host and process id."""
    static = settings.kafka.group_instance_id or settings.kafka.extra.get("group.instance.id")
    return static or f"{socket.gethostname()}-{os.getpid()}"
