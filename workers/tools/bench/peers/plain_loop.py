"""A plain confluent-kafka loop with the pipeline's models: poll → run → produce, commit every second.

What a competent user writes in forty lines: one frame at a time, produce without waiting for
each delivery, and at-least-once by flushing the producer before each periodic commit. No
deadlines: every frame is computed, however late. A frame that cannot be decoded goes to P.dlq
with the reason, so no message is ever lost.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

from confluent_kafka import Consumer, Producer

from workers.errors import PoisonMessage
from workers.messages import headers as h
from workers.tools.bench.peers.spotter import PeerArgs, Spotter, encode, load_pipeline, result

COMMIT_EVERY_S = 1.0


def main(argv: list[str] | None = None) -> int:
    args = PeerArgs.parse(argv, "plain confluent-kafka loop running the pipeline's models")
    pipeline = load_pipeline(args.pipeline)
    spotter = Spotter(pipeline, args.models_dir)
    topics = pipeline.topics
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": args.bootstrap})
    running = [True]

    def stop(signum: int, frame: FrameType | None) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.subscribe([topics.raw])
    uncommitted = 0
    next_commit = time.monotonic() + COMMIT_EVERY_S
    try:
        while running[0]:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                headers = msg.headers() or []
                hd = h.as_dict(headers)  # type: ignore[arg-type]
                key = msg.key()
                try:
                    label, score = spotter.answer(msg.value(), hd.get(h.CONTENT_TYPE, ""))
                    body = result(
                        hd.get(h.ID, ""),
                        key.decode(errors="replace") if key else None,
                        hd.get(h.CAPTURED_MS, ""),
                        label,
                        score,
                    )
                    producer.produce(topics.results, encode(body), key, headers=headers)
                except PoisonMessage as exc:
                    why = [(h.ERROR_STAGE, b"plain-loop"), (h.ERROR_REASON, exc.reason.encode())]
                    producer.produce(topics.dlq, msg.value(), key, headers=[*headers, *why])
                uncommitted += 1
            producer.poll(0)
            if uncommitted and time.monotonic() >= next_commit:
                producer.flush()  # everything produced is delivered before its input is committed
                consumer.commit(asynchronous=False)
                uncommitted = 0
                next_commit = time.monotonic() + COMMIT_EVERY_S
    finally:
        producer.flush()
        if uncommitted:
            consumer.commit(asynchronous=False)
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
