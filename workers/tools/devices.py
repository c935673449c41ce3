"""A simulated fleet of devices that publish real labelled frames to `P.raw`, as real ones would.

The pipeline's YAML names what its devices send (`devices.source`: microphone clips as s16le
PCM for acoustic, Fashion-MNIST test images as PNG for vision) and their key prefix. Each device
(Kafka key `mic-0001`, `cam-0002`, …) sends one frame every 1/rate seconds: the device's own
bytes, checked once against the pipeline's frame decoder, with the contract's headers.
Frames follow an absolute schedule — device d's k-th frame at
k/rate + d/(devices·rate) seconds after the start — so a slow send is caught up, never
accumulated as drift, and devices are spread evenly over each period. Clips cycle through the
pipeline's real labelled frames in an order fixed by the seed, so a run can be repeated and
its accuracy computed from the id → label map it reports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import shlex
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from workers.config.settings import OntimeSettings, load_settings
from workers.config.spec import PipelineSpec
from workers.errors import BrokerError, ConfigError, PoisonMessage
from workers.messages import headers as h
from workers.messages.codec import ContentType
from workers.messages.frames import load_decoder
from workers.tools.device_frames import DEVICE_PREFIX, device_ids, frame_headers

__all__ = [
    "DEVICE_PREFIX",
    "Fleet",
    "LabelledClip",
    "Send",
    "SendReport",
    "SentFrame",
    "check_payloads",
    "device_ids",
    "frame_file_name",
    "frame_headers",
    "kcat_example",
    "load_clips",
    "register_cli",
    "schedule",
]


class LabelledClip(Protocol):
    """What a pipeline's `devices.source(split)` returns: a known label and the device's bytes."""

    @property
    def label(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Send:
    """One planned frame: when (seconds after the start), which device, its frame number."""

    at_s: float
    device: int
    seq: int


def schedule(
    devices: int, rate: float, *, duration_s: float | None = None, frames: int | None = None
) -> Iterator[Send]:
    """The fleet's sends in time order, bounded by `duration_s` and/or a total of `frames`."""
    if devices < 1:
        raise ValueError("a fleet needs at least one device")
    if rate <= 0:
        raise ValueError("rate must be > 0 frames/s per device")
    if duration_s is None and frames is None:
        raise ValueError("bound the fleet by duration_s or frames")
    sent = 0
    seq = 0
    while True:
        for device in range(devices):
            at = seq / rate + device / (devices * rate)
            if duration_s is not None and at >= duration_s:
                return
            if frames is not None and sent >= frames:
                return
            yield Send(at, device, seq)
            sent += 1
        seq += 1


def load_clips(spec: PipelineSpec, split: str = "eval") -> list[LabelledClip]:
    """The pipeline's real labelled frames, from the `devices.source` its YAML names."""
    if spec.devices is None:
        raise ConfigError(f"pipeline {spec.name!r} declares no devices.source to simulate devices with")
    module_name, _, attr = spec.devices.source.partition(":")
    try:
        source = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"pipeline.devices.source {spec.devices.source!r}: {exc}") from exc
    try:
        clips: list[LabelledClip] = source(split)
    except RuntimeError as exc:  # RecordingsMissing / DatasetMissing: names the Debian package
        raise ConfigError(str(exc)) from None
    if not clips:
        raise ConfigError(f"pipeline {spec.name!r} returned no frames for split {split!r}")
    return clips


def check_payloads(spec: PipelineSpec, clips: Sequence[LabelledClip]) -> list[bytes]:
    """Every clip's payload, each checked once with the pipeline's own frame decoder.

    A source whose frames the pipeline would dead-letter is a configuration error, caught
    before a single frame is sent.
    """
    decode = load_decoder(spec.frame)
    payloads = []
    for clip in clips:
        payload = clip.payload
        try:
            decode(payload, spec.frame.content_type)
        except PoisonMessage as exc:
            raise ConfigError(f"frame {clip.source} would go to {spec.topics.dlq}: {exc}") from None
        payloads.append(payload)
    return payloads


@dataclass(frozen=True, slots=True)
class SentFrame:
    """What the fleet knows about one frame it sent: enough to score the result later."""

    id: str
    device: str
    label: str
    captured_ms: int
    source: str


@dataclass
class SendReport:
    """What a fleet run sent and what the broker acknowledged."""

    topic: str
    devices: int
    rate: float
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    elapsed_s: float = 0.0  # last send − start + one fleet interval: the span the frames occupy
    max_behind_ms: float = 0.0
    clips: int = 0
    per_device: Counter[str] = field(default_factory=Counter)
    per_label: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    frames: dict[str, SentFrame] = field(default_factory=dict)

    @property
    def achieved_rate(self) -> float:
        """Frames per second over the whole fleet (target: devices × rate)."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def write_labels(self, path: Path) -> None:
        """id → (device, label, captured_ms) as JSON lines, for scoring results elsewhere."""
        with path.open("w") as out:
            for frame in self.frames.values():
                out.write(json.dumps(asdict(frame), separators=(",", ":")) + "\n")

    def render(self) -> str:
        target = self.devices * self.rate
        lines = [
            f"fleet: {self.devices} devices × {self.rate:g} frames/s → {self.topic} "
            f"({self.clips} real labelled frames, cycling)",
            f"  sent       {self.sent:>7}   in {self.elapsed_s:.1f} s = {self.achieved_rate:.2f} frames/s "
            f"(target {target:.2f})",
            f"  delivered  {self.delivered:>7}   (acks=all, idempotent)",
            f"  failed     {self.failed:>7}" + (f"   {dict(self.errors)}" if self.errors else ""),
            f"  behind schedule at most {self.max_behind_ms:.1f} ms",
        ]
        per_device = sorted(self.per_device.items())
        shown = ", ".join(f"{d}={n}" for d, n in per_device[:8])
        more = f", … ({len(per_device)} devices)" if len(per_device) > 8 else ""
        lines.append(f"  per device: {shown}{more}")
        labels = ", ".join(f"{label}={n}" for label, n in sorted(self.per_label.items()))
        lines.append(f"  per label:  {labels}")
        return "\n".join(lines)


class Fleet:
    """N simulated devices publishing real clips at `rate` frames/s each.

    `run()` blocks until the bound is reached or `stop()` is called (from another thread or a
    signal handler); `sent` / `delivered` / `failed` may be read while it runs.
    """

    def __init__(
        self,
        settings: OntimeSettings,
        devices: int,
        rate: float,
        seed: int = 0,
        *,
        clips: Sequence[LabelledClip] | None = None,
        deadline: bool = True,
        topic: str | None = None,
    ) -> None:
        spec = settings.pipeline
        self.settings = settings
        prefix = spec.devices.key_prefix if spec.devices is not None else DEVICE_PREFIX
        self.devices = device_ids(devices, prefix)
        self.rate = rate
        self.topic = topic or spec.topics.raw
        self.content_type = spec.frame.content_type
        self.budget_ms: float | None = spec.budget_ms if deadline else None
        loaded = list(clips) if clips is not None else load_clips(spec)
        order = list(range(len(loaded)))
        random.Random(seed).shuffle(order)
        self._clips = [loaded[i] for i in order]
        self._payloads = check_payloads(spec, self._clips)
        self._stop = threading.Event()
        self.sent = 0
        self.delivered = 0
        self.failed = 0

    def producer_config(self) -> dict[str, str]:
        conf = self.settings.kafka.as_librdkafka_dict()
        conf.update(
            {
                "client.id": "ontime-devices",
                "enable.idempotence": "true",
                "acks": "all",
                # A device sends each frame as it is captured; batching would only add latency.
                "linger.ms": "0",
            }
        )
        return conf

    def stop(self) -> None:
        """Stop sending after the current frame; `run()` then flushes and returns."""
        self._stop.set()

    def run(
        self,
        duration_s: float | None = None,
        frames: int | None = None,
        on_send: Callable[[SentFrame], None] | None = None,
        flush_timeout_s: float = 30.0,
    ) -> SendReport:
        """Publish on the absolute schedule until the bound; returns what was sent and delivered."""
        from confluent_kafka import KafkaError, Message, Producer

        report = SendReport(self.topic, len(self.devices), self.rate, clips=len(self._clips))
        producer = Producer(self.producer_config())
        # Connect and learn the topic's leaders before the clock starts, as a device does at boot:
        # otherwise the first frames carry the connection set-up in their latency.
        found = producer.list_topics(self.topic, timeout=10.0).topics.get(self.topic)
        if found is None or found.error is not None:
            why = found.error.str() if found is not None and found.error is not None else "missing"
            raise BrokerError(
                f"topic {self.topic} is not usable on {self.settings.kafka.bootstrap_servers} ({why}); "
                "create it with `ontime topics create`"
            )

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                report.errors[err.name()] += 1

        started = time.monotonic()
        sending_s = 0.0
        try:
            for n, send in enumerate(
                schedule(len(self.devices), self.rate, duration_s=duration_s, frames=frames)
            ):
                target = started + send.at_s
                while not self._stop.is_set():
                    left = target - time.monotonic()
                    if left <= 0:
                        break
                    producer.poll(min(left, 0.05))  # serve delivery callbacks while waiting
                if self._stop.is_set():
                    break
                now = time.monotonic()
                report.max_behind_ms = max(report.max_behind_ms, (now - target) * 1000.0)
                # The frames occupy the span up to the last send plus one fleet interval.
                sending_s = now - started + 1.0 / (len(self.devices) * self.rate)
                frame = self._frame(n, send.device)
                self._produce(producer, frame, self._payloads[n % len(self._payloads)], delivered)
                report.frames[frame.id] = frame
                report.per_device[frame.device] += 1
                report.per_label[frame.label] += 1
                self.sent += 1
                if on_send is not None:
                    on_send(frame)
                producer.poll(0)
        finally:
            undelivered = producer.flush(flush_timeout_s)
            report.elapsed_s = sending_s
            if undelivered:
                self.failed += undelivered
                report.errors["undelivered after flush"] += undelivered
            report.sent, report.delivered, report.failed = self.sent, self.delivered, self.failed
        return report

    def _frame(self, n: int, device: int) -> SentFrame:
        clip = self._clips[n % len(self._clips)]
        captured_ms = int(time.time() * 1000)
        return SentFrame(str(uuid.uuid4()), self.devices[device], clip.label, captured_ms, clip.source)

    def _produce(
        self, producer: Any, frame: SentFrame, payload: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None:
        deadline_ms = None if self.budget_ms is None else frame.captured_ms + int(self.budget_ms)
        headers = frame_headers(frame.id, frame.captured_ms, self.content_type, deadline_ms)
        while True:
            try:
                producer.produce(
                    self.topic,
                    value=payload,
                    key=frame.device.encode(),
                    headers=headers,
                    timestamp=frame.captured_ms,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # local queue full: let librdkafka drain it, then retry
                producer.poll(0.1)


def frame_file_name(content_type: str) -> str:
    """`frame.pcm`, `frame.png`, … : a file name for one frame of this content type."""
    mime = ContentType.parse(content_type).mime
    ext = {"audio/pcm": "pcm", "image/png": "png", "image/jpeg": "jpg"}.get(mime, "bin")
    return f"frame.{ext}"


def kcat_example(settings: OntimeSettings, frame_file: str | None = None, device: str | None = None) -> str:
    """The shell command one real device would run to publish one frame with kcat."""
    spec = settings.pipeline
    prefix = spec.devices.key_prefix if spec.devices is not None else DEVICE_PREFIX
    parts = [
        "kcat -P",
        f"-b {settings.kafka.bootstrap_servers}",
        f"-t {spec.topics.raw}",
        f"-k {device or device_ids(1, prefix)[0]}",
        f"-H {h.ID}=$(cat /proc/sys/kernel/random/uuid)",
        f"-H {h.CAPTURED_MS}=$(date +%s%3N)",
        f"-H {shlex.quote(h.CONTENT_TYPE + '=' + spec.frame.content_type)}",
        shlex.quote(frame_file or frame_file_name(spec.frame.content_type)),
    ]
    return " \\\n  ".join(parts)


# -- CLI ----------------------------------------------------------------------------------------
def register_cli(subparsers: Any) -> None:
    """`ontime devices simulate|kcat`."""
    parser = subparsers.add_parser("devices", help="simulated devices that publish real labelled frames")
    verbs = parser.add_subparsers(dest="devices_verb", required=True, metavar="VERB")

    sim = verbs.add_parser("simulate", help="publish real labelled frames as N devices at R frames/s each")
    sim.add_argument("--pipeline", dest="verb_pipeline", default=None, help="pipeline name or YAML path")
    sim.add_argument("--devices", type=int, default=4, help="number of devices (default 4)")
    sim.add_argument("--rate", type=float, default=1.0, help="frames per second per device (default 1)")
    bound = sim.add_mutually_exclusive_group()
    bound.add_argument("--duration", type=float, default=None, help="seconds to run (default 10)")
    bound.add_argument("--frames", type=int, default=None, help="total frames over the fleet")
    sim.add_argument("--seed", type=int, default=0, help="fixes the order of the clips")
    sim.add_argument("--no-deadline", action="store_true", help=f"omit {h.DEADLINE_MS} (stage 1 stamps it)")
    sim.add_argument("--topic", default=None, help="topic to publish to (default: the pipeline's raw topic)")
    sim.add_argument("--labels-out", type=Path, default=None, help="write id→label JSON lines here")
    from workers.tools.stream import add_stream_args

    add_stream_args(sim)
    sim.set_defaults(func=_cmd_simulate)

    kcat = verbs.add_parser("kcat", help="write one real frame to a file and print the kcat command")
    kcat.add_argument("--pipeline", dest="verb_pipeline", default=None, help="pipeline name or YAML path")
    kcat.add_argument(
        "--out", type=Path, default=None, help="where to write it (default frame.pcm, frame.png)"
    )
    kcat.add_argument("--label", default=None, help="pick a clip with this label (default: the first)")
    kcat.set_defaults(func=_cmd_kcat)


def _settings(args: argparse.Namespace) -> OntimeSettings:
    """Settings with the global flags; `--pipeline` after the verb beats the one before it."""
    pipeline = getattr(args, "verb_pipeline", None) or getattr(args, "pipeline", None)
    loader = getattr(args, "load_settings", None)  # set by workers.cli.main (global flags applied)
    if callable(loader):
        settings: OntimeSettings = loader(pipeline)
        return settings
    return load_settings(pipeline)


def _cmd_simulate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if getattr(args, "stream", False):
        from workers.tools.stream import run_stream_cli

        return run_stream_cli(args, settings)
    if args.devices < 1 or args.rate <= 0 or (args.frames is not None and args.frames < 1):
        print("devices simulate: --devices, --rate and --frames must be positive", file=sys.stderr)
        return 2
    duration = args.duration if args.duration is not None or args.frames is not None else 10.0
    fleet = Fleet(
        settings, args.devices, args.rate, args.seed, deadline=not args.no_deadline, topic=args.topic
    )
    print(
        f"publishing to {fleet.topic} on {settings.kafka.bootstrap_servers}: {args.devices} devices × "
        f"{args.rate:g} frames/s" + (f" for {duration:g} s" if duration else f", {args.frames} frames"),
        flush=True,
    )
    # ^C or SIGTERM stops the schedule; what was sent is still flushed and reported.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: fleet.stop())
    report = fleet.run(duration_s=duration, frames=args.frames)
    print(report.render())
    if args.labels_out is not None:
        report.write_labels(args.labels_out)
        print(f"labels: {args.labels_out} ({len(report.frames)} lines)")
    if report.sent == 0 or report.failed:
        print(f"devices simulate: {report.failed} of {report.sent} frames not delivered", file=sys.stderr)
        return 1
    return 0


def _cmd_kcat(args: argparse.Namespace) -> int:
    settings = _settings(args)
    clips = load_clips(settings.pipeline)
    chosen = next((c for c in clips if args.label in (None, c.label)), None)
    if chosen is None:
        print(f"no clip labelled {args.label!r}", file=sys.stderr)
        return 2
    content_type = settings.pipeline.frame.content_type
    out: Path = args.out or Path(frame_file_name(content_type))
    out.write_bytes(check_payloads(settings.pipeline, [chosen])[0])
    print(f"# {out}: one real frame ({chosen.label!r}, {chosen.source}), {content_type}")
    print(kcat_example(settings, str(out)))
    return 0
