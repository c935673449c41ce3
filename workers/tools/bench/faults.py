"""`ontime bench faults`: kill, freeze and cut things under steady load and count what came out.

A private broker (started here, in a temp dir, killed here) serves one private pipeline per
delivery mode with one worker process per stage. A device thread sends real frames at a steady
rate with a budget long enough (60 s by default) that a fault's pause shows up as recovery time,
not as shedding. Each row: the device starts, results flow, the fault happens and ends, the
device keeps sending a while, stops, and the bench waits until every frame is accounted for.

Per row: *sent* = frames the broker acknowledged to the device; *results*, *late*, *dlq* = sent
frames whose final word is on that topic (a `skipped` late record stands for `ontime-late-count`
frames from `ontime-source-offset` on, attributed by offset); *lost* = sent frames with no word at
all after the drain; *duplicates* = words beyond the first per frame (all read with
read_committed); *recover s* = from the fault's end (stage respawned, broker ready again, SIGCONT,
toxic removed) to the broker append time of the first result of a frame sent after that end, so
it includes draining the backlog the fault left.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from workers.config.settings import KafkaSettings, OntimeSettings
from workers.config.spec import STAGE_ORDER, PipelineSpec
from workers.localkafka.broker import LocalBroker
from workers.localkafka.cluster import LocalCluster
from workers.localkafka.config import HOST, free_port
from workers.tools.bench.batches import BatchWatch, MeteredWorkers
from workers.tools.bench.deadlines import machine
from workers.tools.bench.harness import BenchError, Workers, create_topics, private_pipeline
from workers.tools.bench.ledger import Ledger, PipelineReader, Row
from workers.tools.bench.recheck import recheck
from workers.tools.bench.toxiproxy import Toxiproxy
from workers.tools.devices import check_payloads, device_ids, frame_headers, load_clips

MODES = {"at-least-once": False, "exactly-once": True}
PROXY = "kafka"


@dataclass(frozen=True)
class Timing:
    """How long each phase of a row lasts; `--quick` shrinks them for a smoke test."""

    rate: float = 10.0  # frames/s from the device thread
    before_s: float = 5.0  # steady sending after results flow, before the fault
    after_s: float = 20.0  # sending after the fault ended
    broker_down_s: float = 5.0  # kill -9 of the broker: time before the restart
    freeze_s: float = 30.0  # SIGSTOP … SIGCONT
    latency_s: float = 15.0  # how long the added latency stays
    latency_ms: int = 200
    cut_s: float = 10.0  # black hole / reset
    drain_s: float = 240.0  # give up accounting after this


QUICK = Timing(rate=8.0, before_s=2.0, after_s=6.0, broker_down_s=2.0, freeze_s=8.0, latency_s=5.0, cut_s=5.0)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Device:
    """One thread sending real frames at a steady rate; remembers each frame's send time and offset."""

    def __init__(
        self,
        settings: OntimeSettings,
        bootstrap: str,
        ledger: Ledger,
        tag: str,
        rate: float,
        payloads: list[bytes],
    ) -> None:
        spec = settings.pipeline
        self.payloads = payloads
        self.topic, self.budget_ms, self.content_type = (
            spec.topics.raw,
            spec.budget_ms,
            spec.frame.content_type,
        )
        self.devices = device_ids(8)
        self.ledger, self.tag, self.rate = ledger, tag, rate
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
                "message.timeout.ms": 0,  # a device holds its frames through a broker outage
                "log_level": 0,
            }
        )
        self.sent_ms: dict[str, int] = {}
        self.delivered: list[str] = []
        self.failed: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-faults-device", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, flush_timeout_s: float = 300.0) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        left = self.producer.flush(flush_timeout_s)
        if left:
            self.failed["undelivered after flush"] += left

    def _run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop.is_set():
            wait = started + n / self.rate - time.monotonic()
            if wait > 0:
                self.producer.poll(min(wait, 0.05))
                continue
            frame = f"{self.tag}-{n:06d}"
            sent = _now_ms()
            headers: list[tuple[str, str | bytes | None]] = list(
                frame_headers(frame, sent, self.content_type, sent + int(self.budget_ms))
            )
            try:
                self.producer.produce(
                    self.topic,
                    value=self.payloads[n % len(self.payloads)],
                    key=self.devices[n % len(self.devices)].encode(),
                    headers=headers,
                    timestamp=sent,
                    on_delivery=self._delivered(frame),
                )
            except BufferError:
                self.producer.poll(0.1)
                continue
            self.sent_ms[frame] = sent
            self.producer.poll(0)
            n += 1

    def _delivered(self, frame: str) -> Callable[[KafkaError | None, Message], None]:
        def done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failed[err.name()] += 1
                return
            self.delivered.append(frame)
            self.ledger.offset(self.topic, msg.partition() or 0, msg.offset() or 0, frame)

        return done


@dataclass
class Rig:
    """What the faults act on: the broker (its ports), the proxy in front of it, the workers."""

    broker: LocalBroker | None = None
    port: int = 0
    controller_port: int = 0
    proxy: Toxiproxy | None = None
    workers: Workers | None = None
    cluster: LocalCluster | None = None
    down: list[int] = field(default_factory=list)  # cluster nodes killed in this row
    batches: BatchWatch | None = None  # the workers' batch sizes (workers/tools/bench/batches.py)


Fault = Callable[[Rig, Timing], str]  # does the fault, returns when it has ended; a note


def _kill_stage(stage: str) -> Fault:
    def fault(rig: Rig, _: Timing) -> str:
        assert rig.workers is not None
        rig.workers.kill(stage)
        rig.workers.respawn(stage)
        return ""

    return fault


def _kill_broker(rig: Rig, timing: Timing) -> str:
    assert rig.broker is not None
    if not rig.broker.kill():
        raise BenchError("the broker was not running")
    time.sleep(timing.broker_down_s)
    began = time.monotonic()
    rig.broker.start(port=rig.port, controller_port=rig.controller_port)
    return f"down {timing.broker_down_s:g} s + {time.monotonic() - began:.0f} s restart"


def _freeze_broker(rig: Rig, timing: Timing) -> str:
    assert rig.broker is not None
    state = rig.broker.state()
    if state is None:
        raise BenchError("the broker is not running")
    os.kill(state.pid, signal.SIGSTOP)
    try:
        time.sleep(timing.freeze_s)
    finally:
        os.kill(state.pid, signal.SIGCONT)
    return f"stopped {timing.freeze_s:g} s"


def _latency(rig: Rig, timing: Timing) -> str:
    assert rig.proxy is not None
    for stream in ("upstream", "downstream"):
        rig.proxy.add_toxic(PROXY, f"lat-{stream}", "latency", stream, latency=timing.latency_ms, jitter=0)
    try:
        time.sleep(timing.latency_s)
    finally:
        for stream in ("upstream", "downstream"):
            rig.proxy.remove_toxic(PROXY, f"lat-{stream}")
    return f"+{timing.latency_ms} ms each way for {timing.latency_s:g} s"


def _blackhole(rig: Rig, timing: Timing) -> str:
    assert rig.proxy is not None
    for stream in ("upstream", "downstream"):  # timeout=0: data is dropped, connections stay open
        rig.proxy.add_toxic(PROXY, f"hole-{stream}", "timeout", stream, timeout=0)
    try:
        time.sleep(timing.cut_s)
    finally:
        for stream in ("upstream", "downstream"):
            rig.proxy.remove_toxic(PROXY, f"hole-{stream}")
    return f"nothing passes for {timing.cut_s:g} s, connections left open"


def _reset(rig: Rig, timing: Timing) -> str:
    assert rig.proxy is not None
    rig.proxy.enable(PROXY, False)  # open connections closed, new ones refused
    try:
        time.sleep(timing.cut_s)
    finally:
        rig.proxy.enable(PROXY, True)
    return f"connections closed and refused for {timing.cut_s:g} s"


def _kill_cluster_node(rig: Rig, _: Timing) -> str:
    assert rig.cluster is not None
    node = 2  # any of the three: each leads about a third of the partitions
    if not rig.cluster.kill(node):
        raise BenchError(f"cluster node {node} was not running")
    rig.down.append(node)  # it stays down for the rest of the row
    return f"node {node} of 3 killed, left down until the row is accounted"


BROKER, PROXIED, CLUSTER = "broker", "proxied", "cluster"
FAULTS: dict[str, tuple[str, Fault, str]] = {  # key → (label, fault, what it needs)
    **{f"kill-{s}": (f"kill -9 {s}", _kill_stage(s), BROKER) for s in STAGE_ORDER},
    "kill-broker": ("kill -9 broker, restart", _kill_broker, BROKER),
    "freeze-broker": ("broker SIGSTOP … SIGCONT", _freeze_broker, BROKER),
    "latency": ("network: added latency", _latency, PROXIED),
    "blackhole": ("network: black hole", _blackhole, PROXIED),
    "reset": ("network: reset, refused", _reset, PROXIED),
    "kill-cluster-node": ("3-node cluster: kill -9 one broker", _kill_cluster_node, CLUSTER),
}


def with_exactly_once(settings: OntimeSettings, on: bool) -> OntimeSettings:
    data = settings.pipeline.model_dump(mode="json")
    for stage in data["stages"].values():
        stage["exactly_once"] = on
    return settings.model_copy(update={"pipeline": PipelineSpec.model_validate(data)})


def revive(workers: Workers) -> list[str]:
    """What a supervisor would do: restart every stage process that exited; what each died of."""
    notes: list[str] = []
    for w in list(workers.procs):
        code = w.proc.poll()
        if code is None:
            continue
        lines = w.log.read_text(errors="replace").splitlines()
        why = next((line for line in reversed(lines) if "Error" in line or "Exception" in line), "")
        notes.append(f"{w.stage} EXITED {code} ({why.strip()[-150:]}), restarted")
        workers.respawn(w.stage)
    return notes


def with_replicas(settings: OntimeSettings, replicas: int) -> OntimeSettings:
    data = settings.pipeline.model_dump(mode="json")
    data["topics"]["replication_factor"] = replicas
    return settings.model_copy(update={"pipeline": PipelineSpec.model_validate(data)})


def run_row(
    key: str,
    mode: str,
    rig: Rig,
    settings: OntimeSettings,
    ledger: Ledger,
    timing: Timing,
    direct: str,
    payloads: list[bytes],
) -> Row:
    label, fault, _ = FAULTS[key]
    assert rig.workers is not None
    row = Row(label, mode)
    device = Device(settings, direct, ledger, f"{key}-{mode[:3]}", timing.rate, payloads)
    if rig.batches is not None:
        rig.batches.take()  # the row's batches start now
    device.start()
    give_up = time.monotonic() + 180
    deaths: list[str] = []
    while ledger.accounted(list(device.delivered)) < 10:  # results flowing before the fault
        deaths += revive(rig.workers)
        if time.monotonic() > give_up:
            raise BenchError(f"{label}: no results before the fault")
        time.sleep(0.2)  # waiting on other threads
    time.sleep(timing.before_s)
    row.note = fault(rig, timing)
    ended_ms = _now_ms()
    time.sleep(timing.after_s)
    device.stop()
    ids = list(device.delivered)
    give_up = time.monotonic() + timing.drain_s
    while ledger.accounted(ids) < len(ids) and time.monotonic() < give_up:
        deaths += revive(rig.workers)
        time.sleep(0.5)  # waiting on the pipeline
    time.sleep(3.0)  # late duplicates of a redelivered batch still count
    ledger.tally(row, ids, device.sent_ms, ended_ms)
    if rig.batches is not None:
        row.largest_batch = rig.batches.take()
    deaths += revive(rig.workers)
    if device.failed:
        row.note += f"; device errors {dict(device.failed)}"
    if row.lost_after:  # where the unanswered frames stopped: P.raw = preprocess never answered, …
        row.note += "; lost after " + ", ".join(f"{t} {n}" for t, n in sorted(row.lost_after.items()))
        t = settings.pipeline.topics
        row.note += "; " + recheck(
            direct, [t.raw, t.features, t.scores, t.results, t.late, t.dlq], row.lost_ids
        )
    if deaths:
        row.note += "; " + "; ".join(deaths)
    return row


HEAD = (
    "| fault | mode | sent | results | late | dlq | lost | duplicates | largest batch | recover s "
    "| fault detail |"
)


def render_row(r: Row) -> str:
    rec = f"{r.recover_s:.1f}" if r.recover_s is not None else "never"
    late = f"{r.late} ({', '.join(f'{k} {n}' for k, n in r.late_reasons.items())})" if r.late else "0"
    batch = "/".join(str(r.largest_batch.get(s, "?")) for s in STAGE_ORDER) if r.largest_batch else "?"
    return (
        f"| {r.fault} | {r.mode} | {r.sent} | {r.results} | {late} | {r.dlq} | {r.lost} "
        f"| {r.duplicates} | {batch} | {rec} | {r.note} |"
    )


def render(rows: list[Row]) -> str:
    return "\n".join([HEAD, "|" + "---|" * 11, *(render_row(r) for r in rows)])


def run_bench(
    settings: OntimeSettings,
    out: TextIO,
    *,
    faults: Sequence[str] = tuple(FAULTS),
    modes: Sequence[str] = tuple(MODES),
    timing: Timing = Timing(),
    budget_ms: float = 60_000,
    keep: Path | None = None,
) -> list[Row]:
    unknown = [f for f in faults if f not in FAULTS] + [m for m in modes if m not in MODES]
    if unknown:
        raise BenchError(f"unknown faults or modes: {unknown} (faults: {list(FAULTS)}; modes: {list(MODES)})")
    single = [f for f in faults if FAULTS[f][2] != CLUSTER]
    clustered = [f for f in faults if FAULTS[f][2] == CLUSTER]
    needs_proxy = any(FAULTS[f][2] == PROXIED for f in faults)
    out.write(f"machine: {machine()}\n")
    out.write(
        f"pipeline {settings.pipeline.name}: budget {budget_ms:g} ms, one process per stage, "
        f"device {timing.rate:g} frames/s, {timing.before_s:g} s before and {timing.after_s:g} s after "
        f"each fault; workers reach the broker {'through toxiproxy' if needs_proxy else 'directly'}\n"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ontime-faults-") as tmp:
        run_dir = Path(tmp)
        if keep is not None:  # the workers' logs outlive the run, to trace a lost frame
            keep.mkdir(parents=True, exist_ok=True)
            run_dir = Path(tempfile.mkdtemp(prefix="ontime-faults-", dir=keep))
        if single:
            rows += _on_one_broker(settings, run_dir, single, modes, needs_proxy, timing, budget_ms, out)
        if clustered:
            rows += _on_cluster(settings, run_dir, clustered, modes, timing, budget_ms, out)
    out.write("\n" + render(rows) + "\n")
    return rows


def _on_one_broker(
    settings: OntimeSettings,
    run_dir: Path,
    faults: Sequence[str],
    modes: Sequence[str],
    needs_proxy: bool,
    timing: Timing,
    budget_ms: float,
    out: TextIO,
) -> list[Row]:
    """One broker (and Toxiproxy in front of it when a network fault is asked for), every mode."""
    proxy_port, proxied_port = free_port(), free_port()
    broker = LocalBroker(run_dir / "kafka", proxied=(proxied_port, proxy_port))
    direct = broker.start()
    state = broker.state()
    assert state is not None
    rig = Rig(broker, state.port, state.controller_port)
    rows: list[Row] = []
    try:
        worker_bootstrap = direct
        if needs_proxy:
            rig.proxy = Toxiproxy(run_dir / "toxiproxy.log")
            rig.proxy.start()
            rig.proxy.proxy(PROXY, proxy_port, proxied_port)
            worker_bootstrap = f"{HOST}:{proxy_port}"
        for mode in modes:
            rows += _run_mode(
                settings, mode, rig, run_dir, direct, worker_bootstrap, faults, timing, budget_ms, out
            )
    finally:
        if rig.workers is not None:
            rig.workers.stop()
        if rig.proxy is not None:
            rig.proxy.stop()
        live = broker.state()
        if live is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(live.pid, signal.SIGCONT)  # never leave a frozen JVM behind
        broker.stop()
    return rows


def _on_cluster(
    settings: OntimeSettings,
    run_dir: Path,
    faults: Sequence[str],
    modes: Sequence[str],
    timing: Timing,
    budget_ms: float,
    out: TextIO,
) -> list[Row]:
    """Three brokers on loopback, topics with 3 replicas and min ISR 2; a killed node comes back
    after its row so the next one starts whole."""
    cluster = LocalCluster(run_dir / "cluster")
    bootstrap = cluster.start()
    rig = Rig(cluster=cluster)
    rows: list[Row] = []
    try:
        for mode in modes:
            rows += _run_mode(
                settings, mode, rig, run_dir, bootstrap, bootstrap, faults, timing, budget_ms, out
            )
    finally:
        if rig.workers is not None:
            rig.workers.stop()
        cluster.stop()
    return rows


def _run_mode(
    settings: OntimeSettings,
    mode: str,
    rig: Rig,
    run_dir: Path,
    direct: str,
    worker_bootstrap: str,
    faults: Sequence[str],
    timing: Timing,
    budget_ms: float,
    out: TextIO,
) -> list[Row]:
    payloads = check_payloads(settings.pipeline, load_clips(settings.pipeline)[:64])
    live = private_pipeline(settings, direct, "faults", budget_ms=budget_ms)
    live = with_exactly_once(live, MODES[mode])
    if rig.cluster is not None:
        live = with_replicas(live, len(rig.cluster.nodes))
    create_topics(live)
    wait_hosted(direct, live.pipeline.topics.all())
    live = live.model_copy(update={"kafka": KafkaSettings(bootstrap_servers=worker_bootstrap)})
    ledger = Ledger()
    reader = PipelineReader(live, direct, ledger)
    workers = MeteredWorkers(live, run_dir)
    rig.workers, rig.batches = workers, BatchWatch(workers.ports)
    rows: list[Row] = []
    try:
        reader.start()
        rig.batches.start()
        # On the 3-node cluster librdkafka 2.x aborted (rd_kafka_enq_once_del_source_return
        # assertion) in the group probe of `wait_assigned`; the row waits for results instead.
        rig.workers.start(ready_timeout_s=180, wait=rig.cluster is None)
        for key in faults:
            out.write(f"{mode}: {FAULTS[key][0]} …\n")
            out.flush()
            row = run_row(key, mode, rig, live, ledger, timing, direct, payloads)
            out.write(f"  {render_row(row)}\n")
            rows.append(row)
            while rig.cluster is not None and rig.down:
                rig.cluster.restart(rig.down.pop())
    finally:
        rig.batches.stop()
        rig.batches = None
        rig.workers.stop()
        rig.workers = None
        reader.stop()
    return rows


def wait_hosted(bootstrap: str, topics: Sequence[str], timeout_s: float = 120.0) -> None:
    """Until every partition's leader answers for it (its log exists), not just until metadata
    names a leader. On the loaded 3-node cluster a leader took seconds after the topic's
    creation to host its partitions, and the device's idempotent producer reported the four
    frames it had sent meanwhile as delivered although no broker ever wrote them (librdkafka;
    docs/reliability.md): the row then counted them as lost by the pipeline."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-faults-probe", "log_level": 0})
    try:
        meta = probe.list_topics(timeout=10).topics
        pending = [TopicPartition(t, p) for t in topics if t in meta for p in meta[t].partitions]
        give_up = time.monotonic() + timeout_s
        while pending and time.monotonic() < give_up:
            still = []
            for tp in pending:
                try:
                    probe.get_watermark_offsets(tp, timeout=2.0, cached=False)
                except KafkaException:
                    still.append(tp)
            pending = still
        if pending:
            raise BenchError(f"{len(pending)} partitions not hosted after {timeout_s:g} s")
    finally:
        probe.close()


def register_cli(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "faults", help="kill -9, broker freeze, network faults under load: lost, duplicates, recovery"
    )
    bench.add_argument(
        "--quick", action="store_true", help="short phases, kill -9 postprocess only (smoke test)"
    )
    bench.add_argument("--faults", default=None, help=f"comma-separated, of: {', '.join(FAULTS)}")
    bench.add_argument("--modes", default=None, help=f"comma-separated, of: {', '.join(MODES)}")
    bench.add_argument("--rate", type=float, default=None, help="device frames/s")
    bench.add_argument("--json", default=None, help="also write the rows to this file")
    bench.add_argument(
        "--keep", default=None, help="run in a new directory under this one and keep it (logs)"
    )
    bench.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    import sys

    timing = QUICK if args.quick else Timing()
    if args.rate is not None:
        timing = dataclasses.replace(timing, rate=args.rate)
    default_faults = ("kill-postprocess",) if args.quick else tuple(FAULTS)
    default_modes = ("at-least-once",) if args.quick else tuple(MODES)
    faults = [f for f in (args.faults or ",".join(default_faults)).split(",") if f]
    modes = [m for m in (args.modes or ",".join(default_modes)).split(",") if m]
    keep = Path(args.keep) if args.keep else None
    rows = run_bench(args.load_settings(), sys.stdout, faults=faults, modes=modes, timing=timing, keep=keep)
    if args.json:
        Path(args.json).write_text(
            json.dumps([{**r.__dict__, "late_reasons": dict(r.late_reasons)} for r in rows], indent=2)
        )
    return 1 if any(r.lost for r in rows) else 0
