"""What a local single-node Kafka needs on disk: pom, server properties, log4j config, cluster id.

Pure functions with no Java and no network, so the generated files can be unit-tested.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

__all__ = [
    "DEFAULT_CONTROLLER_PORT",
    "DEFAULT_PORT",
    "HOST",
    "KAFKA_VERSION",
    "LOG4J_VERSIONS",
    "PROXIED_LISTENER",
    "broker_properties",
    "cache_root",
    "free_port",
    "log4j_properties",
    "log4j_version_for",
    "new_cluster_id",
    "port_is_free",
    "render_pom",
    "render_properties",
    "write_private",
]

KAFKA_VERSION = "4.1.1"
# The log4j binding is not in Kafka's POM (only in the release tarball); it must match the
# log4j-core that `mvn dependency:tree` shows for that Kafka version.
LOG4J_VERSIONS: dict[str, str] = {"4.1.1": "2.24.3"}

DEFAULT_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
HOST = "127.0.0.1"


def cache_root() -> Path:
    """Root of ontime's caches (jars, local broker state); ONTIME_CACHE_DIR overrides ~/.cache/ontime."""
    override = os.environ.get("ONTIME_CACHE_DIR", "").strip()
    return Path(override).expanduser() if override else Path.home() / ".cache" / "ontime"


def log4j_version_for(kafka_version: str) -> str:
    """The log4j version Kafka `kafka_version` was built against; unknown versions raise."""
    try:
        return LOG4J_VERSIONS[kafka_version]
    except KeyError:
        known = ", ".join(sorted(LOG4J_VERSIONS))
        raise ValueError(
            f"no known log4j version for Kafka {kafka_version} (known: {known}); run "
            "`mvn dependency:tree` on org.apache.kafka:kafka_2.13 and add it to LOG4J_VERSIONS"
        ) from None


def render_pom(kafka_version: str, log4j_version: str | None = None) -> str:
    """A throwaway POM whose runtime dependencies are exactly the broker's classpath."""
    log4j = log4j_version or log4j_version_for(kafka_version)
    deps = [
        ("org.apache.kafka", "kafka_2.13", kafka_version),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", log4j),
        ("org.apache.logging.log4j", "log4j-core", log4j),
    ]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<project xmlns="http://maven.apache.org/POM/4.0.0">',
        "  <modelVersion>4.0.0</modelVersion>",
        "  <groupId>dev.ontime</groupId>",
        "  <artifactId>ontime-kafka-local</artifactId>",
        f"  <version>{escape(kafka_version)}</version>",
        "  <packaging>pom</packaging>",
        "  <dependencies>",
    ]
    for group, artifact, version in deps:
        lines += [
            "    <dependency>",
            f"      <groupId>{group}</groupId>",
            f"      <artifactId>{artifact}</artifactId>",
            f"      <version>{escape(version)}</version>",
            "    </dependency>",
        ]
    lines += ["  </dependencies>", "</project>", ""]
    return "\n".join(lines)


PROXIED_LISTENER = "PROXIED"


def broker_properties(
    port: int,
    controller_port: int,
    data_dir: Path,
    node_id: int = 1,
    proxied: tuple[int, int] | None = None,
    voters: Mapping[int, int] | None = None,
) -> dict[str, str]:
    """server.properties for one process that is both broker and KRaft controller, on loopback.

    `voters` (node id → controller port, this node among them) makes it one node of a cluster
    with a static controller quorum: replication factor 3 (or the node count) and min ISR 2 for
    topics and the internal topics, so losing one node loses no acknowledged record.

    `proxied = (listen_port, proxy_port)` adds a PROXIED listener that advertises the proxy's
    port: clients bootstrapping through a proxy (Toxiproxy in `ontime bench faults`) learn the
    proxy's address from metadata and never bypass it, while PLAINTEXT stays direct.
    """
    listeners = [f"PLAINTEXT://{HOST}:{port}", f"CONTROLLER://{HOST}:{controller_port}"]
    advertised = list(listeners)
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if proxied is not None:
        listen_port, proxy_port = proxied
        listeners.append(f"{PROXIED_LISTENER}://{HOST}:{listen_port}")
        advertised.append(f"{PROXIED_LISTENER}://{HOST}:{proxy_port}")
        protocols.append(f"{PROXIED_LISTENER}:PLAINTEXT")
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(data_dir),
        "num.partitions": "3",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        # One node: internal topics cannot have more replicas than brokers.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests and demos join groups constantly; the default 3 s delay dominates their runtime.
        "group.initial.rebalance.delay.ms": "0",
        "delete.topic.enable": "true",
        "log.retention.hours": "24",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    if voters:
        del props["controller.quorum.bootstrap.servers"]  # static quorum: the voters are the list
        props.update(_cluster_overrides(voters))
    return props


def _cluster_overrides(voters: Mapping[int, int]) -> dict[str, str]:
    replicas = str(min(3, len(voters)))
    isr = str(min(2, len(voters)))
    return {
        "controller.quorum.voters": ",".join(f"{i}@{HOST}:{p}" for i, p in sorted(voters.items())),
        "default.replication.factor": replicas,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": isr,
    }


def render_properties(props: Mapping[str, str]) -> str:
    """Java properties text; values here never need escaping beyond backslashes."""
    body = "".join(f"{key}={value.replace(chr(92), chr(92) * 2)}\n" for key, value in props.items())
    return "# Generated by ontime (workers/localkafka/config.py); edits are overwritten.\n" + body


def log4j_properties() -> str:
    """log4j2 config: everything to stdout (redirected to the broker log), request noise off."""
    return "\n".join(
        [
            "status = warn",
            "appender.stdout.type = Console",
            "appender.stdout.name = STDOUT",
            "appender.stdout.layout.type = PatternLayout",
            "appender.stdout.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.stdout.ref = STDOUT",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "logger.statechange.name = state.change.logger",
            "logger.statechange.level = WARN",
            "logger.authorizer.name = kafka.authorizer.logger",
            "logger.authorizer.level = WARN",
            # Full config dumps (five of ~340 lines each per start); server.properties has them.
            "logger.config.name = org.apache.kafka.common.config.AbstractConfig",
            "logger.config.level = WARN",
            "",
        ]
    )


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, never starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids it too: it reads as a CLI flag
            return text


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on host:port and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST, exclude: frozenset[int] = frozenset()) -> int:
    """A port the kernel says is free now (it may be taken again before Kafka binds it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)
