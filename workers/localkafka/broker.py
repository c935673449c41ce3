"""A real single-node Apache Kafka (KRaft, broker+controller in one JVM) on 127.0.0.1 for dev and tests.

`LocalBroker(state_dir).start()` formats storage, launches `java ... kafka.Kafka` as a detached process
and waits until a metadata request succeeds. A pid file and a JSON state file in `state_dir` let
another process (`ontime broker status|down`) find and stop it later. When
ONTIME_KAFKA__BOOTSTRAP_SERVERS names an existing cluster, the CLI uses that and starts nothing.
`LocalBroker(state_dir, secure=True)` listens with TLS + SCRAM-SHA-512 and enforces ACLs
(workers/localkafka/secure.py); `client_settings(user)` logs a client in as one of its users.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from workers.errors import BrokerError
from workers.localkafka.cds import adopt_archive, archive_path, class_sharing_flags
from workers.localkafka.config import (
    HOST,
    KAFKA_VERSION,
    broker_properties,
    cache_root,
    free_port,
    log4j_properties,
    new_cluster_id,
    port_is_free,
    render_properties,
    write_private,
)
from workers.localkafka.jars import JarFetchError, ensure_jars
from workers.localkafka.secure import ADMIN, Credentials, secure_properties

__all__ = [
    "BrokerError",
    "BrokerStartError",
    "BrokerState",
    "JarFetchError",
    "LocalBroker",
    "default_state_dir",
    "ensure_jars",
]

_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]


class BrokerStartError(BrokerError):
    """The broker process failed or did not become ready; the message carries the log tail."""


def default_state_dir(secure: bool = False) -> Path:
    """Where `ontime broker up` keeps pid, state, log and data: <cache>/broker (or broker-secure)."""
    return cache_root() / ("broker-secure" if secure else "broker")


@dataclasses.dataclass(frozen=True)
class BrokerState:
    """What a running local broker looks like to other processes (stored as broker.json)."""

    pid: int
    bootstrap: str
    port: int
    controller_port: int
    version: str
    cluster_id: str
    data_dir: str
    log_file: str
    properties_file: str
    started_at: float
    ready_seconds: float
    libs_dir: str = ""
    class_archive_dump: str = ""  # where this JVM writes its class archive on exit, if it does
    secure: bool = False
    credentials_dir: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BrokerState:
        raw = json.loads(text)
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in names})


class LocalBroker:
    """One local Kafka broker whose files live in `state_dir`; safe to drive from several processes."""

    def __init__(
        self,
        state_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        heap_mb: int = 512,
        class_sharing: bool = True,
        secure: bool = False,
        proxied: tuple[int, int] | None = None,
        node_id: int = 1,
        voters: Mapping[int, int] | None = None,
        cluster_id: str | None = None,
    ) -> None:
        """`proxied = (listen_port, proxy_port)`: also listen for clients that come through a proxy.

        `voters` (node id → controller port) makes this node `node_id` of a static-quorum cluster
        (see workers/localkafka/cluster.py); its ports must then be given to `start`.
        """
        self.proxied = proxied
        self.node_id = node_id
        self.voters = dict(voters) if voters else None
        self.cluster_id = cluster_id  # the nodes of one cluster format with the same id
        default = default_state_dir(secure)
        self.state_dir = (Path(state_dir) if state_dir is not None else default).absolute()
        # A state dir that holds credentials stays secure, even when opened without the flag.
        self.secure = secure or (self.state_dir / "credentials" / "ca.pem").is_file()
        self.credentials = Credentials(self.state_dir / "credentials") if self.secure else None
        self.version = version
        self.heap_mb = heap_mb
        self.class_sharing = class_sharing
        self._dump: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- files -------------------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "broker.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.state_dir / "log4j2.properties"

    # -- queries -----------------------------------------------------------------------------
    def state(self) -> BrokerState | None:
        """The recorded state if its process is still our running broker, else None."""
        try:
            state = BrokerState.from_json(self.state_file.read_text())
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError, TypeError):
            return None
        if pid != state.pid or not _is_our_broker(pid, state.properties_file):
            return None
        return state

    def is_running(self) -> bool:
        """True if the broker recorded in state_dir is alive (a stale pid file is not)."""
        return self.state() is not None

    @property
    def bootstrap(self) -> str | None:
        state = self.state()
        return state.bootstrap if state else None

    def client_settings(self, user: str = ADMIN, bootstrap: str | None = None) -> dict[str, str]:
        """`kafka:` settings overrides that reach this broker, logged in as `user` when secure."""
        bootstrap = bootstrap or self.bootstrap
        if bootstrap is None:
            raise BrokerError(f"no broker running in {self.state_dir}")
        if self.credentials is None:
            return {"bootstrap_servers": bootstrap}
        return self.credentials.settings(user, bootstrap)

    def client_config(self, user: str = ADMIN, bootstrap: str | None = None) -> dict[str, str]:
        """librdkafka configuration for `user` (the super user by default), from `KafkaSettings`."""
        from workers.config.settings import KafkaSettings

        return KafkaSettings.model_validate(self.client_settings(user, bootstrap)).as_librdkafka_dict()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        controller_port: int | None = None,
        timeout: float = 120.0,
    ) -> str:
        """Start the broker (or find it already running) and return its bootstrap servers.

        Ports default to free ones; `data_dir` defaults to <state_dir>/data and survives restarts.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            running = self.state()
            if running is not None:
                return running.bootstrap
            self._discard_stale_dump()
            self._forget()
            _choose_ports(port, controller_port)  # fail on busy ports before any download
            java = shutil.which("java")
            if java is None:
                raise BrokerStartError("`java` is not on PATH; Kafka 4 needs Java 17+")
            libs = ensure_jars(self.version)
            data = Path(data_dir) if data_dir is not None else self.state_dir / "data"
            # Ports we pick may be taken by someone else before Kafka binds them: then pick again.
            attempts_left = 3 if port is None and controller_port is None else 1
            while True:
                attempts_left -= 1
                ports = _choose_ports(port, controller_port)
                try:
                    state = self._start_once(java, libs, data, *ports, timeout)
                except BrokerStartError as exc:
                    if attempts_left and "Address already in use" in str(exc):
                        continue
                    raise
                _write_atomic(self.state_file, state.to_json())
                return state.bootstrap

    def _start_once(
        self, java: str, libs: Path, data: Path, port: int, controller_port: int, timeout: float
    ) -> BrokerState:
        data.mkdir(parents=True, exist_ok=True)
        props = broker_properties(
            port, controller_port, data, self.node_id, proxied=self.proxied, voters=self.voters
        )
        if self.credentials is not None:
            if _read_cluster_id(data) and not self.credentials.exists():
                raise BrokerStartError(f"{data} was formatted without SCRAM users; remove {self.state_dir}")
            self.credentials.ensure()
            props.update(secure_properties(port, controller_port, self.credentials))
        # 0600: in secure mode it holds the broker's own SCRAM password.
        write_private(self.properties_file, render_properties(props).encode())
        self.log4j_file.write_text(log4j_properties())
        began = time.monotonic()
        cluster_id = _read_cluster_id(data) or self._format(java, libs, data)
        self._proc = self._launch(java, libs)
        self.pid_file.write_text(f"{self._proc.pid}\n")
        bootstrap = f"{HOST}:{port}"
        try:
            self._wait_ready(self.client_config(bootstrap=bootstrap), port, began + timeout)
            if self.credentials is not None:
                self.credentials.write_env_files(bootstrap)
        except BaseException:
            self._terminate(self._proc.pid)
            self._forget()
            if self._dump is not None:
                self._dump.unlink(missing_ok=True)
            raise
        return BrokerState(
            pid=self._proc.pid,
            bootstrap=bootstrap,
            port=port,
            controller_port=controller_port,
            version=self.version,
            cluster_id=cluster_id,
            data_dir=str(data),
            log_file=str(self.log_file),
            properties_file=str(self.properties_file),
            started_at=time.time(),
            ready_seconds=round(time.monotonic() - began, 3),
            libs_dir=str(libs),
            class_archive_dump=str(self._dump or ""),
            secure=self.secure,
            credentials_dir=str(self.credentials.root) if self.credentials is not None else "",
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop our broker by its pid (SIGTERM, then SIGKILL); False if none was running.

        Garbage Kafka clients of this process are collected first, while the broker still
        answers: librdkafka's destroy of a client left in a reference cycle, run later by the
        garbage collector against a broker that is gone, was seen to block its thread forever.
        """
        gc.collect()
        with self._locked():
            state = self.state()
            stopped = False
            if state is not None:
                graceful = self._terminate(state.pid, timeout)
                stopped = True
                if state.class_archive_dump:
                    dump = Path(state.class_archive_dump)
                    if graceful and state.libs_dir:
                        adopt_archive(dump, Path(state.libs_dir))
                    else:  # killed mid-dump: the file may be truncated
                        dump.unlink(missing_ok=True)
            self._forget()
            return stopped

    def kill(self) -> bool:
        """kill -9 the JVM, as a crash would (fault tests): no shutdown, state left as it was."""
        with self._locked():
            state = self.state()
            if state is None:
                return False
            proc = self._proc if self._proc is not None and self._proc.pid == state.pid else None
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGKILL)
            _wait_exit(state.pid, proc, 10.0)
            self._proc = None
            if state.class_archive_dump:
                Path(state.class_archive_dump).unlink(missing_ok=True)
            self._forget()
            return True

    # -- internals ---------------------------------------------------------------------------
    def _classpath(self, libs: Path) -> str:
        return str(libs / "*")

    def _format(self, java: str, libs: Path, data: Path) -> str:
        cluster_id = self.cluster_id or new_cluster_id()
        archive = archive_path(libs)
        sharing = [f"-XX:SharedArchiveFile={archive}"] if self.class_sharing and archive.is_file() else []
        cmd = [
            java,
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",  # a short-lived tool: the C2 compiler would only cost CPU
            *sharing,
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp",
            self._classpath(libs),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_file),
            *([] if self.voters else ["--standalone"]),  # a static quorum is named in the properties
            *(self.credentials.scram_format_args() if self.credentials is not None else []),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-4000:]
            if self.credentials is not None:  # the tool may echo its --add-scram arguments
                output = self.credentials.redact(output)
            raise BrokerStartError(f"formatting {data} failed (exit {done.returncode}):\n{output}")
        return cluster_id

    def _launch(self, java: str, libs: Path) -> subprocess.Popen[bytes]:
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        heap = f"{self.heap_mb}m"
        sharing: list[str] = []
        self._dump = None
        if self.class_sharing:
            sharing, self._dump = class_sharing_flags(libs)
        cmd = [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            *_JVM_FLAGS,
            *sharing,
            f"-Dkafka.logs.dir={self.state_dir}",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp",
            self._classpath(libs),
            "kafka.Kafka",
            str(self.properties_file),
        ]
        with self.log_file.open("ab") as log:
            # A new session: the broker outlives `ontime broker up` and ignores the terminal's ^C.
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,
            )

    def _wait_ready(self, conf: dict[str, str], port: int, deadline: float) -> None:
        """Block until the port accepts and a metadata request lists this broker."""
        from confluent_kafka.admin import AdminClient

        assert self._proc is not None
        admin = None
        last_error = "port not open yet"
        bootstrap = conf["bootstrap.servers"]
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BrokerStartError(
                    f"Kafka exited with code {code} during start-up; {self._log_tail_text()}"
                )
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"Kafka at {bootstrap} not ready in time ({last_error}); {self._log_tail_text()}"
                )
            if admin is None and _port_accepts(port):
                admin = AdminClient({**conf, "log_level": 2})
            if admin is not None:
                try:
                    metadata = admin.list_topics(timeout=2.0)
                except Exception as exc:  # KafkaException: broker up but not serving yet
                    last_error = str(exc)
                else:
                    if metadata.brokers:
                        return
                    last_error = "metadata lists no brokers"
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=0.2)

    def _terminate(self, pid: int, timeout: float = 30.0) -> bool:
        """SIGTERM, wait, then SIGKILL; True if the JVM exited on its own after SIGTERM."""
        proc = self._proc if self._proc is not None and self._proc.pid == pid else None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        graceful = _wait_exit(pid, proc, timeout)
        if not graceful:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_exit(pid, proc, 10.0)
        if proc is not None:
            self._proc = None
        return graceful

    def _discard_stale_dump(self) -> None:
        """A broker that died without `stop` may have left a half-written class archive."""
        try:
            dump = BrokerState.from_json(self.state_file.read_text()).class_archive_dump
        except (OSError, ValueError, TypeError):
            return
        if dump:
            Path(dump).unlink(missing_ok=True)

    def _forget(self) -> None:
        for path in (self.pid_file, self.state_file):
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the broker log ('' if there is none)."""
        return _tail(self.log_file, lines)

    def _log_tail_text(self) -> str:
        """First errors (the cause; a stack trace can push it out of the tail) plus the log's end."""
        tail = self.log_tail(20)
        if not tail:
            return f"{self.log_file} is empty"
        errors = _error_lines(_tail(self.log_file, 2000), limit=5)
        cause = "errors:\n" + "\n".join(errors) + "\n" if errors else ""
        return f"{cause}last lines of {self.log_file}:\n{tail}"


def _choose_ports(port: int | None, controller_port: int | None) -> tuple[int, int]:
    """The given ports, or free ones, checked to be distinct and bindable now."""
    port = port if port is not None else free_port(exclude=frozenset({controller_port or 0}))
    if controller_port is None:
        controller_port = free_port(exclude=frozenset({port}))
    if port == controller_port:
        raise BrokerStartError(f"client and controller port are both {port}")
    for wanted in (port, controller_port):
        if not port_is_free(wanted):
            raise BrokerStartError(f"port {HOST}:{wanted} is already in use")
    return port, controller_port


# -- process helpers ---------------------------------------------------------------------------
def _is_our_broker(pid: int, properties_file: str) -> bool:
    """True if `pid` is alive and is `kafka.Kafka <properties_file>`: never signal a reused pid."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):  # exited, not yet reaped
        return False
    return b"kafka.Kafka" in args and properties_file.encode() in args


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _wait_exit(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    if proc is not None:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # not our child: nothing to wait on but /proc
    return True


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_cluster_id(data: Path) -> str | None:
    """The cluster id of an already formatted log dir, so a restart keeps its topics."""
    try:
        text = (data / "meta.properties").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id" and value.strip():
            return value.strip()
    return None


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _error_lines(text: str, limit: int) -> list[str]:
    """ERROR/FATAL log lines, each with the exception message on the line after it."""
    lines = text.splitlines()
    found: list[str] = []
    for i, line in enumerate(lines):
        if " ERROR " in line or " FATAL " in line:
            found.append(line[:400])
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if following and not following.startswith(("[", "\t")):
                found.append("    " + following[:400])
        if len(found) >= 2 * limit:
            break
    return found


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text)
    partial.replace(path)
