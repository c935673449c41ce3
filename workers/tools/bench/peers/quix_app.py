"""A Quix Streams application with the pipeline's models: `Application`, `sdf.apply`, `to_topic`.

What a Python user would pick instead of ontime, written the way its documentation shows: one
frame at a time, at-least-once (Quix's default: it flushes the producer and commits every 5 s),
no deadlines. A frame that cannot be decoded is routed to P.dlq with the reason.

Runs in .venv/quix (quixstreams pins confluent-kafka below ontime's minimum).
"""

from __future__ import annotations

import tempfile
from typing import Any

from quixstreams import Application

from workers.errors import PoisonMessage
from workers.messages import headers as h
from workers.tools.bench.peers.spotter import PeerArgs, Spotter, load_pipeline, result


def main(argv: list[str] | None = None) -> int:
    args = PeerArgs.parse(argv, "Quix Streams application running the pipeline's models")
    pipeline = load_pipeline(args.pipeline)
    spotter = Spotter(pipeline, args.models_dir)
    with tempfile.TemporaryDirectory(prefix="ontime-quix-") as state_dir:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
        )
        frames = app.topic(pipeline.topics.raw, value_deserializer="bytes")
        results = app.topic(pipeline.topics.results, value_serializer="json")
        dlq = app.topic(pipeline.topics.dlq, value_serializer="json")

        def answer(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> dict[str, object]:
            hd = h.as_dict(headers)
            device = key.decode(errors="replace") if key else None
            try:
                label, score = spotter.answer(value, hd.get(h.CONTENT_TYPE, ""))
            except PoisonMessage as exc:
                return {"id": hd.get(h.ID, ""), "device": device, "error": exc.reason, "detail": exc.detail}
            return result(hd.get(h.ID, ""), device, hd.get(h.CAPTURED_MS, ""), label, score)

        sdf = app.dataframe(frames)
        sdf = sdf.apply(answer, metadata=True)
        sdf.to_topic(lambda value, *_: dlq if "error" in value else results)
        app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
