"""The local broker's generated files, cache paths and bookkeeping, without starting Java."""

from __future__ import annotations

import argparse
import base64
import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from workers.config.settings import BOOTSTRAP_ENV
from workers.localkafka import broker as broker_mod
from workers.localkafka import cli as broker_cli
from workers.localkafka.broker import BrokerStartError, BrokerState, LocalBroker, default_state_dir
from workers.localkafka.cds import adopt_archive, archive_path, class_sharing_flags
from workers.localkafka.config import (
    KAFKA_VERSION,
    broker_properties,
    cache_root,
    free_port,
    log4j_properties,
    log4j_version_for,
    new_cluster_id,
    port_is_free,
    render_pom,
    render_properties,
)
from workers.localkafka.jars import JarFetchError, ensure_jars, jars_dir

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value.replace("\\\\", "\\") for key, value in pairs}


def test_properties_make_one_loopback_node_with_both_roles(tmp_path: Path) -> None:
    props = broker_properties(port=29092, controller_port=29093, data_dir=tmp_path / "data")
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:29093"
    assert "controller.quorum.voters" not in props  # --standalone format needs it unset
    assert props["log.dirs"] == str(tmp_path / "data")


def test_properties_fit_a_single_broker_and_fast_tests(tmp_path: Path) -> None:
    props = broker_properties(port=1, controller_port=2, data_dir=tmp_path)
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["num.partitions"] == "3"


def test_rendered_properties_read_back_identically() -> None:
    props = {"log.dirs": r"C:\kafka\data", "node.id": "1"}
    assert _parse_properties(render_properties(props)) == props


def test_pom_pins_kafka_and_the_matching_log4j_binding() -> None:
    root = ET.fromstring(render_pom(KAFKA_VERSION))
    deps = {
        (d.findtext("m:groupId", namespaces=POM_NS), d.findtext("m:artifactId", namespaces=POM_NS)): (
            d.findtext("m:version", namespaces=POM_NS)
        )
        for d in root.iterfind("m:dependencies/m:dependency", POM_NS)
    }
    assert deps == {
        ("org.apache.kafka", "kafka_2.13"): "4.1.1",
        ("org.apache.logging.log4j", "log4j-slf4j-impl"): "2.24.3",
        ("org.apache.logging.log4j", "log4j-core"): "2.24.3",
    }
    assert root.findtext("m:packaging", namespaces=POM_NS) == "pom"


def test_unknown_kafka_version_has_no_guessed_log4j_version() -> None:
    with pytest.raises(ValueError, match="dependency:tree"):
        log4j_version_for("9.9.9")
    assert "<version>2.0.0</version>" in render_pom("9.9.9", log4j_version="2.0.0")


def test_log4j_config_writes_to_stdout_and_quiets_request_logs() -> None:
    text = log4j_properties()
    assert "rootLogger.appenderRef.stdout.ref = STDOUT" in text
    assert "logger.request.level = WARN" in text


def test_cache_root_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ONTIME_CACHE_DIR", raising=False)
    assert cache_root() == Path.home() / ".cache" / "ontime"
    monkeypatch.setenv("ONTIME_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
    assert jars_dir("4.1.1") == tmp_path / "kafka-4.1.1" / "libs"
    assert default_state_dir() == tmp_path / "broker"


def test_cached_jars_are_reused_without_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONTIME_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no mvn reachable
    with pytest.raises(JarFetchError, match="Maven"):
        ensure_jars("4.1.1")
    libs = jars_dir("4.1.1")
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    (libs / ".complete").write_text("4.1.1\n")
    assert ensure_jars("4.1.1") == libs


def test_cluster_id_is_a_kafka_uuid() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16


def test_port_checks_see_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert not port_is_free(busy)
        assert free_port(exclude=frozenset({busy})) != busy


def _state(tmp_path: Path, pid: int) -> BrokerState:
    return BrokerState(
        pid=pid,
        bootstrap="127.0.0.1:1",
        port=1,
        controller_port=2,
        version=KAFKA_VERSION,
        cluster_id=new_cluster_id(),
        data_dir=str(tmp_path / "data"),
        log_file=str(tmp_path / "broker.log"),
        properties_file=str(tmp_path / "server.properties"),
        started_at=0.0,
        ready_seconds=1.5,
    )


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    state = _state(tmp_path, 42)
    assert BrokerState.from_json(state.to_json()) == state


def test_a_pid_file_naming_another_process_is_stale_and_never_signalled(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path)
    own = os.getpid()  # alive, but not kafka.Kafka with our properties: must not be touched
    broker.state_file.write_text(_state(tmp_path, own).to_json())
    broker.pid_file.write_text(f"{own}\n")
    assert not broker.is_running()
    assert broker.bootstrap is None
    assert broker.stop() is False
    assert not broker.pid_file.exists() and not broker.state_file.exists()


def test_start_refuses_a_busy_port_before_launching_java(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(BrokerStartError, match=f"127.0.0.1:{busy} is already in use"):
            LocalBroker(tmp_path).start(port=busy)
    with pytest.raises(BrokerStartError, match="both"):
        LocalBroker(tmp_path).start(port=busy, controller_port=busy)
    assert not (tmp_path / "broker.pid").exists()


def test_cluster_id_is_read_back_from_a_formatted_log_dir(tmp_path: Path) -> None:
    assert broker_mod._read_cluster_id(tmp_path) is None
    (tmp_path / "meta.properties").write_text("#\nnode.id=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\nversion=1\n")
    assert broker_mod._read_cluster_id(tmp_path) == "AbCdEfGhIjKlMnOpQrStUv"


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path)
    assert broker.log_tail() == ""
    broker.log_file.write_text("".join(f"line {i}\n" for i in range(100)))
    assert broker.log_tail(3) == "line 97\nline 98\nline 99"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ontime")
    broker_cli.register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_broker_verbs(tmp_path: Path) -> None:
    args = _parser().parse_args(["broker", "up", "--port", "1234", "--state-dir", str(tmp_path), "-q"])
    assert (args.port, args.state_dir, args.quiet, args.func) == (1234, tmp_path, True, broker_cli._cmd_up)
    for verb in ("down", "status", "logs", "fetch"):
        assert callable(_parser().parse_args(["broker", verb]).func)


def test_cli_up_uses_an_existing_cluster_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(BOOTSTRAP_ENV, "kafka.example:9092")
    args = _parser().parse_args(["broker", "up", "--state-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert "using existing cluster kafka.example:9092" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_cli_status_and_down_without_a_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    status = _parser().parse_args(["broker", "status", "--state-dir", str(tmp_path)])
    assert status.func(status) == 3
    down = _parser().parse_args(["broker", "down", "--state-dir", str(tmp_path)])
    assert down.func(down) == 0
    out = capsys.readouterr().out
    assert "not running" in out and "no local broker running" in out


def test_class_archive_is_dumped_once_then_shared(tmp_path: Path) -> None:
    libs = tmp_path / "kafka-4.1.1" / "libs"
    libs.mkdir(parents=True)
    flags, dump = class_sharing_flags(libs)
    assert dump is not None and dump.parent == libs.parent
    assert flags == [f"-XX:ArchiveClassesAtExit={dump}"]
    _, other = class_sharing_flags(libs)
    assert other != dump  # two first brokers never write the same file

    dump.write_bytes(b"classes")
    adopt_archive(dump, libs)
    assert archive_path(libs).read_bytes() == b"classes" and not dump.exists()
    assert class_sharing_flags(libs) == ([f"-XX:SharedArchiveFile={archive_path(libs)}"], None)

    assert other is not None
    other.write_bytes(b"later")
    adopt_archive(other, libs)  # an archive exists: the later dump is dropped, not swapped in
    assert archive_path(libs).read_bytes() == b"classes" and not other.exists()


def test_start_errors_quote_kafkas_error_lines_with_their_exception() -> None:
    log = "\n".join(
        [
            "[2026-11-24 00:27:05,000] INFO starting (kafka.Kafka$)",
            "[2026-11-24 00:27:05,821] ERROR Unable to start acceptor for PLAINTEXT (kafka.network.Acceptor)",
            "org.apache.kafka.common.KafkaException: Socket server failed to bind: Address already in use.",
            "\tat org.apache.kafka.server.ServerSocketFactory.openServerSocket(ServerSocketFactory.java:56)",
            "[2026-11-24 00:27:07,479] ERROR Exiting Kafka due to fatal exception. (kafka.Kafka$)",
        ]
    )
    lines = broker_mod._error_lines(log, limit=5)
    assert len(lines) == 3
    assert "Unable to start acceptor" in lines[0]
    assert lines[1].strip().endswith("Address already in use.")
    assert "Exiting Kafka" in lines[2]


def test_a_proxied_listener_advertises_the_proxy_so_clients_never_bypass_it(tmp_path: Path) -> None:
    props = broker_properties(port=1, controller_port=2, data_dir=tmp_path, proxied=(3, 4))
    assert props["listeners"].split(",")[-1] == "PROXIED://127.0.0.1:3"
    assert props["advertised.listeners"].split(",")[-1] == "PROXIED://127.0.0.1:4"
    assert "PROXIED:PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"  # replication and the controller stay direct
    plain = broker_properties(port=1, controller_port=2, data_dir=tmp_path)
    assert "PROXIED" not in plain["listeners"] + plain["advertised.listeners"]


def test_a_cluster_node_names_a_static_quorum_and_replicates_everything_three_times(tmp_path: Path) -> None:
    voters = {1: 9001, 2: 9002, 3: 9003}
    props = broker_properties(port=8002, controller_port=9002, data_dir=tmp_path, node_id=2, voters=voters)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9001,2@127.0.0.1:9002,3@127.0.0.1:9003"
    assert "controller.quorum.bootstrap.servers" not in props  # static quorum: the voters only
    for key in ("default.replication.factor", "offsets.topic.replication.factor"):
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr"):
        assert props[key] == "2", key
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:8002,CONTROLLER://127.0.0.1:9002"
