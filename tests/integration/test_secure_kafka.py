"""Secure Kafka on the real broker: TLS + SCRAM-SHA-512, least-privilege ACLs, refusals that stop.

One secure broker for this module (a second JVM, started only here): `LocalBroker(dir,
secure=True)`, exactly what `ontime broker up --secure` runs. Workers run as `ontime worker`
subprocesses logged in through the same `ONTIME_KAFKA__*` variables an SRE puts in a Secret, so
their whole output (our logs and librdkafka's own lines) can be searched for secrets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from tests.integration.pipeline_kit import (
    ROOT,
    Frame,
    cli_overrides,
    eval_clips,
    frames_from,
    pipeline_overrides,
    wait_for,
)
from workers.config.settings import KafkaSettings, OntimeSettings, load_settings
from workers.kafka.acls import DEVICE, DOWNSTREAM, apply_grants, pipeline_grants, stage_principal
from workers.kafka.topics import create_topics
from workers.localkafka.broker import LocalBroker
from workers.localkafka.secure import Credentials
from workers.localkafka.secure_cli import rotate_password
from workers.localkafka.tls import make_ca
from workers.messages import headers as h

STAGES = ("preprocess", "infer", "postprocess")
FRAMES = 12
EXIT_GUARD_S = 180.0  # a refused worker must exit on its own long before this


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-secure"), secure=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def creds(secure_broker: LocalBroker) -> Credentials:
    assert secure_broker.credentials is not None
    return secure_broker.credentials


@pytest.fixture(scope="module")
def pipeline(secure_broker: LocalBroker) -> OntimeSettings:
    """A fresh pipeline whose topics the admin created and whose ACLs are in force."""
    bootstrap = secure_broker.bootstrap
    assert bootstrap is not None
    overrides = pipeline_overrides(f"s{uuid.uuid4().hex[:8]}", bootstrap, partitions=2)
    overrides["kafka"] = secure_broker.client_settings()
    admin_settings = load_settings("acoustic", overrides)
    create_topics(admin_settings)
    apply_grants(AdminClient(secure_broker.client_config()), pipeline_grants(admin_settings.pipeline))
    return admin_settings


def _conf(broker: LocalBroker, user: str) -> dict[str, str]:
    return broker.client_config(user)


def _secrets(creds: Credentials) -> list[str]:
    """Every secret a log line could leak: passwords, key passwords, private key material."""
    found = [str(creds.password(u)) for u in creds.known_users()]
    for user in creds.known_users():
        folder = creds.user_dir(user)
        found.append((folder / "key-password").read_text().strip())
        found += _pem_body(folder / "client.key")
    found += _pem_body(creds.ca_key) + _pem_body(creds.keystore, only_key=True)
    return [s for s in found if s]


def _pem_body(path: Path, only_key: bool = False) -> list[str]:
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("-----BEGIN"):
            inside = "PRIVATE KEY" in line or not only_key
        elif line.startswith("-----END"):
            inside = False
        elif inside and len(line) >= 16:
            lines.append(line)
    return lines


def assert_no_secret(text: str, secrets: Sequence[str]) -> None:
    leaked = [s[:4] + "…" for s in secrets if s in text]
    assert not leaked, f"secrets in the log: {leaked}"


class SecureWorker:
    """`ontime worker --stage X` logged in through ONTIME_KAFKA__* variables, output to a file."""

    def __init__(
        self,
        settings: OntimeSettings,
        stage: str,
        kafka: dict[str, str],
        log: Path,
        extra: Sequence[str] = (),
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONTIME_")}
        env.update({f"ONTIME_KAFKA__{k.upper()}": v for k, v in kafka.items()})
        env["PYTHONUNBUFFERED"] = "1"
        # librdkafka's own security and broker debug lines go to the same log: they too must stay clean.
        flags = ["--log-level", "DEBUG", "--set", "kafka.extra.debug=security,broker", *extra]
        cmd = [
            sys.executable,
            "-m",
            "workers.cli",
            *cli_overrides(settings),
            *flags,
            "worker",
            "--stage",
            stage,
        ]
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def exit_code(self, timeout: float = EXIT_GUARD_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"worker still running after {timeout} s:\n{self.text()[-3000:]}") from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.exit_code(60)


@pytest.fixture
def workers() -> Iterator[list[SecureWorker]]:
    started: list[SecureWorker] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(30)


def _send(conf: dict[str, str], topic: str, frames: Sequence[Frame]) -> list[KafkaError | None]:
    producer = Producer({**conf, "enable.idempotence": True, "linger.ms": 5})
    outcomes: list[KafkaError | None] = []
    now = str(int(time.time() * 1000))
    for f in frames:
        headers = [
            (h.ID, f.id.encode()),
            (h.CONTENT_TYPE, f.content_type.encode()),
            (h.CAPTURED_MS, now.encode()),
        ]
        producer.produce(
            topic,
            value=f.payload,
            key=f.device.encode(),
            headers=headers,
            on_delivery=lambda e, _m: outcomes.append(e),
        )
    assert producer.flush(60) == 0, "records neither delivered nor refused"
    return outcomes


def _read_ids(
    conf: dict[str, str],
    topic: str,
    want: set[str],
    timeout: float = 240.0,
    isolation: str = "read_uncommitted",
) -> set[str]:
    """Ids read from `topic` (from the beginning) until every id in `want` is among them."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"{DOWNSTREAM}-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    ids: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not want <= ids and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            ids.add(h.as_dict(msg.headers())[h.ID])
    finally:
        consumer.close()
    return ids


def test_stage_principals_run_the_pipeline_over_tls_and_scram(
    secure_broker: LocalBroker,
    creds: Credentials,
    pipeline: OntimeSettings,
    workers: list[SecureWorker],
    tmp_path: Path,
) -> None:
    """Each stage logs in as its own principal, with nothing but its ACLs; no frame is lost."""
    bootstrap = pipeline.kafka.bootstrap_servers
    for stage in STAGES:
        kafka = creds.settings(stage_principal(stage), bootstrap)
        workers.append(SecureWorker(pipeline, stage, kafka, tmp_path / f"{stage}.log"))
    frames = frames_from(eval_clips()[:FRAMES], prefix="sec")
    topics = pipeline.pipeline.topics
    assert _send(_conf(secure_broker, DEVICE), topics.raw, frames) == [None] * FRAMES
    sent = {f.id for f in frames}
    assert sent <= _read_ids(_conf(secure_broker, DOWNSTREAM), topics.results, sent)
    for w in workers:
        assert w.stop() == 0, w.text()[-3000:]
        assert "kafka-refused" not in w.text()
        # the control topic's reader and publisher are allowed too (no advisory failures)
        assert "control-read-error" not in w.text() and "control-publish-failed" not in w.text()
        assert "sasl_ssl://" in w.text()  # librdkafka's debug lines are in the searched log
        assert_no_secret(w.text(), _secrets(creds))


def test_exactly_once_stage_needs_and_gets_its_transactional_id_grant(
    secure_broker: LocalBroker,
    creds: Credentials,
    pipeline: OntimeSettings,
    workers: list[SecureWorker],
    tmp_path: Path,
) -> None:
    """infer with Kafka transactions: refused until its TransactionalId prefix is granted, then runs."""
    eos = ["--set", "pipeline.stages.infer.exactly_once=true"]
    bootstrap = pipeline.kafka.bootstrap_servers
    infer = creds.settings(stage_principal("infer"), bootstrap)
    refused = SecureWorker(pipeline, "infer", infer, tmp_path / "refused.log", eos)
    workers.append(refused)
    assert refused.exit_code() == 1
    assert (
        "KafkaRefused: not authorized: User:ontime-infer may not use this transactional id" in refused.text()
    )

    spec = pipeline.pipeline.model_copy(deep=True)
    spec.stages["infer"].exactly_once = True
    apply_grants(AdminClient(secure_broker.client_config()), pipeline_grants(spec))
    for stage in STAGES:
        kafka = creds.settings(stage_principal(stage), bootstrap)
        workers.append(SecureWorker(pipeline, stage, kafka, tmp_path / f"{stage}.log", eos))
    frames = frames_from(eval_clips()[:FRAMES], prefix="eos")
    topics = pipeline.pipeline.topics
    assert _send(_conf(secure_broker, DEVICE), topics.raw, frames) == [None] * FRAMES
    sent = {f.id for f in frames}
    assert sent <= _read_ids(
        _conf(secure_broker, DOWNSTREAM), topics.results, sent, isolation="read_committed"
    )
    for w in workers[1:]:
        assert w.stop() == 0, w.text()[-3000:]
        assert "kafka-refused" not in w.text()
        assert_no_secret(w.text(), _secrets(creds))


def test_wrong_password_stops_the_worker_naming_authentication(
    creds: Credentials, pipeline: OntimeSettings, workers: list[SecureWorker], tmp_path: Path
) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password-" + uuid.uuid4().hex + "\n")
    kafka = {
        **creds.settings(stage_principal("infer"), pipeline.kafka.bootstrap_servers),
        "sasl_password_file": str(wrong),
    }
    worker = SecureWorker(pipeline, "infer", kafka, tmp_path / "worker.log")
    workers.append(worker)
    assert worker.exit_code() == 1
    text = worker.text()
    assert "KafkaRefused: authentication failed" in text
    assert "User:ontime-infer" in text and "SCRAM-SHA-512" in text
    assert text.count("kafka-refused") == 1  # said once, then stopped: no silent retry loop
    assert_no_secret(text, [*_secrets(creds), wrong.read_text().strip()])


def test_untrusted_ca_stops_the_worker_naming_the_certificate(
    creds: Credentials, pipeline: OntimeSettings, workers: list[SecureWorker], tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_ca("someone else's CA").cert_pem)
    kafka = {
        **creds.settings(stage_principal("infer"), pipeline.kafka.bootstrap_servers),
        "ssl_ca_location": str(other_ca),
    }
    worker = SecureWorker(pipeline, "infer", kafka, tmp_path / "worker.log")
    workers.append(worker)
    assert worker.exit_code() == 1
    text = worker.text()
    assert "KafkaRefused: TLS handshake" in text
    assert "untrusted CA certificate" in text and "certificate verify failed" in text
    assert_no_secret(text, _secrets(creds))


def test_hostname_verification_refuses_a_name_the_certificate_does_not_carry(
    creds: Credentials,
    workers: list[SecureWorker],
    pipeline: OntimeSettings,
    tmp_path: Path,
) -> None:
    """The broker certificate names 127.0.0.1 and localhost; this machine's own name is neither."""
    name = socket.gethostname()
    try:
        resolves = socket.gethostbyname(name) == "127.0.0.1"
    except OSError:
        resolves = False
    if not resolves or name == "localhost":
        pytest.skip(f"host name {name!r} does not resolve to 127.0.0.1 here")
    port = pipeline.kafka.bootstrap_servers.rsplit(":", 1)[1]
    kafka = creds.settings(stage_principal("infer"), f"{name}:{port}")
    worker = SecureWorker(pipeline, "infer", kafka, tmp_path / "worker.log")
    workers.append(worker)
    assert worker.exit_code() == 1
    assert "KafkaRefused: TLS handshake" in worker.text() and "hostname verification" in worker.text()
    # Turned off (unsafe), the same name connects: the check above was the hostname, not the CA.
    assert _logs_in({**kafka, "ssl_endpoint_identification_algorithm": "none"})


def test_principal_without_acls_stops_the_worker_naming_authorization(
    secure_broker: LocalBroker,
    creds: Credentials,
    pipeline: OntimeSettings,
    workers: list[SecureWorker],
    tmp_path: Path,
) -> None:
    rotate_password(secure_broker, "ontime-nobody")  # a valid login that no ACL mentions
    kafka = creds.settings("ontime-nobody", pipeline.kafka.bootstrap_servers)
    wait_for(lambda: _logs_in(kafka), 60, "the new SCRAM user can log in")
    worker = SecureWorker(pipeline, "preprocess", kafka, tmp_path / "worker.log")
    workers.append(worker)
    assert worker.exit_code() == 1
    text = worker.text()
    assert "KafkaRefused: not authorized: User:ontime-nobody" in text
    assert_no_secret(text, _secrets(creds))


def _logs_in(kafka: dict[str, str]) -> bool:
    admin = AdminClient({**KafkaSettings.model_validate(kafka).as_librdkafka_dict(), "log_level": 0})
    try:
        admin.list_topics(timeout=3)
    except Exception:  # KafkaException: not (yet) accepted
        return False
    return True


def test_device_may_write_raw_only(secure_broker: LocalBroker, pipeline: OntimeSettings) -> None:
    topics = pipeline.pipeline.topics
    device = _conf(secure_broker, DEVICE)
    consumer = Consumer({**device, "group.id": f"{DEVICE}-peek", "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topics.results, timeout=30).topics[topics.results]
        assert meta.error is not None and meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        consumer.subscribe([topics.results])
        refused = None
        deadline = time.monotonic() + 60
        while refused is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is not None, "the device read a result"
                refused = msg.error().code()
        assert refused in (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    finally:
        consumer.close()
    frame = frames_from(eval_clips()[:1], prefix="dev")
    (outcome,) = _send(device, topics.results, frame)
    assert outcome is not None and outcome.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_rotated_password_replaces_the_old_one(secure_broker: LocalBroker, creds: Credentials) -> None:
    bootstrap = secure_broker.bootstrap
    assert bootstrap is not None
    old = {
        **creds.settings(DOWNSTREAM, bootstrap),
        "sasl_password_file": None,
        "sasl_password": creds.password(DOWNSTREAM),
    }
    rotate_password(secure_broker, DOWNSTREAM)
    new = creds.settings(DOWNSTREAM, bootstrap)
    wait_for(lambda: _logs_in(new), 60, "the rotated password is accepted")
    wait_for(lambda: not _logs_in(old), 60, "the old password is refused")


def test_no_secret_in_the_broker_log(secure_broker: LocalBroker, creds: Credentials) -> None:
    assert_no_secret(secure_broker.log_file.read_text(errors="replace"), _secrets(creds))
