"""Streaming devices: each device's continuous audio as overlapping 1 s frames every hop.

`ontime devices simulate --stream --hop-ms 250` (or `StreamFleet` in code) gives every device its
own stream (pipelines/acoustic/streams.py: real background, real keyword recordings at known
times, real non-keyword words) and publishes frame k of device d — samples [k·hop, k·hop + 1 s) —
with `ontime-captured-ms` = the capture time of the frame's **last** sample (stream start + k·hop
+ 1 s), the moment a microphone has the whole frame. The ground truth (device, keyword, start_ms,
end_ms on the same clock) is written beside the run as JSON lines.

Pacing: `speed=1` sends each frame when its last sample is captured (real time, what the demo
does); `speed=8` replays eight times faster on the same capture clock (benchmarks, tests). The
event detector works on capture times only, so the events are the same at any speed; only the
latency numbers need real time. Replays send no `ontime-deadline-ms`: the first stage stamps the
deadline from the send time, so a replayed frame is not late for being old audio.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers.config.settings import OntimeSettings
from workers.errors import BrokerError
from workers.tools.device_frames import DEVICE_PREFIX, device_ids, frame_headers
from workers.tools.events.scoring import Truth, write_truth

SAMPLE_RATE = 16_000


def device_seed(fleet_seed: int, device: int) -> int:
    """The audio seed of a fleet's `device`-th stream (the offline replica builds the same audio)."""
    return fleet_seed * 1000 + device


@dataclass(frozen=True)
class StreamPlan:
    """What each device streams: seconds of audio, keywords and other words in it, noise level."""

    seconds: float = 30.0
    keywords: int | tuple[str, ...] = 6
    distractors: int = 0
    snr_db: float | None = None
    source: str = "eval"
    spacing_s: float = 4.0
    lead_s: float = 2.0


@dataclass(frozen=True, slots=True)
class StreamedFrame:
    id: str
    device: str
    captured_ms: int


@dataclass
class StreamReport:
    """What a streaming run sent, and the ground truth to score events against."""

    topic: str
    devices: int
    hop_ms: int
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    audio_s: float = 0.0
    truths: list[Truth] = field(default_factory=list)
    frames: dict[str, StreamedFrame] = field(default_factory=dict)
    speech_words: int = 0  # non-keyword words spoken
    start_ms: int = 0  # capture time of every device's first sample

    def write_truth(self, path: Path) -> None:
        write_truth(path, self.truths)

    def render(self) -> str:
        return (
            f"stream: {self.devices} devices, {self.audio_s:g} s of audio each, hop {self.hop_ms} ms → "
            f"{self.topic}\n  frames sent {self.sent}, delivered {self.delivered}, failed {self.failed}\n"
            f"  keywords in the audio {len(self.truths)}, other words {self.speech_words}"
        )


class StreamFleet:
    """N devices streaming their audio as overlapping frames; `run()` blocks until done or `stop()`."""

    def __init__(
        self,
        settings: OntimeSettings,
        devices: int,
        plan: StreamPlan,
        hop_ms: int | None = None,
        seed: int = 0,
        *,
        speed: float = 1.0,
        device_names: list[str] | None = None,
        topic: str | None = None,
    ) -> None:
        from pipelines.acoustic.streams import build_stream

        spec = settings.pipeline
        hop_ms = (
            spec.events.hop_ms if hop_ms is None else hop_ms
        )  # the hop the aggregator's detector is tuned for
        if hop_ms <= 0 or speed <= 0:
            raise ValueError("hop_ms and speed must be > 0")
        self.settings = settings
        prefix = spec.devices.key_prefix if spec.devices is not None else DEVICE_PREFIX
        self.devices = device_names or device_ids(devices, prefix)
        self.hop_ms = hop_ms
        self.speed = speed
        self.topic = topic or spec.topics.raw
        self.content_type = spec.frame.content_type
        self.plan = plan
        self.audio = [
            build_stream(
                plan.source,
                plan.seconds,
                plan.keywords,
                seed=device_seed(seed, i),
                snr_db=plan.snr_db,
                distractors=plan.distractors,
                spacing_s=plan.spacing_s,
                lead_s=plan.lead_s,
            )
            for i in range(len(self.devices))
        ]
        self._stop = threading.Event()
        self.sent = 0

    def stop(self) -> None:
        self._stop.set()

    def run(
        self, start_ms: int | None = None, on_send: Callable[[StreamedFrame], None] | None = None
    ) -> StreamReport:
        """Send every device's frames in capture order; `start_ms` is the capture time of sample 0."""
        from confluent_kafka import Producer

        from pipelines.acoustic.streams import windows

        hop = self.hop_ms * SAMPLE_RATE // 1000
        frames = [windows(a.pcm, hop) for a in self.audio]
        # By default the devices have been listening for one frame already: frame 0 is complete now.
        t0 = int(time.time() * 1000) - 1000 if start_ms is None else start_ms
        report = StreamReport(
            self.topic, len(self.devices), self.hop_ms, audio_s=self.plan.seconds, start_ms=t0
        )
        for device, audio in zip(self.devices, self.audio, strict=True):
            report.truths += [
                Truth(device, s.word, t0 + s.start_ms, t0 + s.end_ms, s.source) for s in audio.keywords
            ]
            report.speech_words += sum(1 for s in audio.spoken if not s.keyword)
        conf: dict[str, Any] = {
            **self.settings.kafka.as_librdkafka_dict(),
            "client.id": "ontime-stream-devices",
            "enable.idempotence": "true",
            "acks": "all",
            "linger.ms": "0" if self.speed <= 1 else "5",
        }
        producer = Producer(conf)
        if producer.list_topics(self.topic, timeout=10.0).topics.get(self.topic) is None:
            raise BrokerError(f"topic {self.topic} does not exist; create it with `ontime topics create`")

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                report.delivered += 1
            else:
                report.failed += 1

        count = max((len(f) for f in frames), default=0)
        wall0 = time.monotonic()
        try:
            for k in range(count):
                end_offset_ms = (k * hop + SAMPLE_RATE) * 1000 // SAMPLE_RATE
                due = wall0 + (end_offset_ms - 1000) / 1000.0 / self.speed
                while not self._stop.is_set() and (left := due - time.monotonic()) > 0:
                    producer.poll(min(left, 0.05))
                if self._stop.is_set():
                    break
                for d, device in enumerate(self.devices):
                    if k >= len(frames[d]):
                        continue
                    frame = StreamedFrame(str(uuid.uuid4()), device, t0 + end_offset_ms)
                    self._produce(
                        producer, frame, np.ascontiguousarray(frames[d][k], "<i2").tobytes(), delivered
                    )
                    report.frames[frame.id] = frame
                    report.sent += 1
                    self.sent += 1
                    if on_send is not None:
                        on_send(frame)
                producer.poll(0)
        finally:
            left = producer.flush(30.0)
            report.failed += left
        return report

    def _produce(self, producer: Any, frame: StreamedFrame, payload: bytes, on_delivery: Any) -> None:
        deadline = None
        if self.speed == 1.0:
            deadline = frame.captured_ms + int(self.settings.pipeline.budget_ms)
        headers = frame_headers(frame.id, frame.captured_ms, self.content_type, deadline)
        while True:
            try:
                producer.produce(
                    self.topic,
                    value=payload,
                    key=frame.device.encode(),
                    headers=headers,
                    on_delivery=on_delivery,
                    **({"timestamp": frame.captured_ms} if deadline is not None else {}),
                )
                return
            except BufferError:
                producer.poll(0.1)


# -- CLI (flags of `ontime devices simulate`) --------------------------------------------------
def add_stream_args(sim: Any) -> None:
    """`--stream` and its knobs on `ontime devices simulate`."""
    group = sim.add_argument_group("streaming devices (continuous audio, overlapping frames)")
    group.add_argument("--stream", action="store_true", help="stream continuous audio with keywords in it")
    group.add_argument(
        "--hop-ms",
        type=int,
        default=None,
        help="ms between frame starts (default: the pipeline's events.hop_ms)",
    )
    group.add_argument("--keywords", type=int, default=6, help="keyword utterances per device (default 6)")
    group.add_argument("--words", type=int, default=0, help="non-keyword words per device (default 0)")
    group.add_argument(
        "--snr-db", type=float, default=None, help="background level vs speech (default quiet)"
    )
    group.add_argument("--speed", type=float, default=1.0, help="replay faster than real time (default 1)")
    group.add_argument("--truth-out", type=Path, default=None, help="write the ground truth JSON lines here")


def run_stream_cli(args: Any, settings: OntimeSettings) -> int:
    """`ontime devices simulate --stream ...`."""
    import signal
    import sys

    seconds = args.duration if args.duration is not None else 30.0
    plan = StreamPlan(seconds=seconds, keywords=args.keywords, distractors=args.words, snr_db=args.snr_db)
    fleet = StreamFleet(
        settings, args.devices, plan, args.hop_ms, args.seed, speed=args.speed, topic=args.topic
    )
    print(
        f"streaming to {fleet.topic} on {settings.kafka.bootstrap_servers}: {args.devices} devices, "
        f"{seconds:g} s of audio each, a 1 s frame every {fleet.hop_ms} ms, speed ×{args.speed:g}",
        flush=True,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: fleet.stop())
    report = fleet.run()
    print(report.render())
    if args.truth_out is not None:
        report.write_truth(args.truth_out)
        print(f"ground truth: {args.truth_out} ({len(report.truths)} keywords)")
    if report.sent == 0 or report.failed:
        print(f"devices simulate: {report.failed} of {report.sent} frames not delivered", file=sys.stderr)
        return 1
    return 0
