"""A deployed worker (a compose service or a chart's Deployment) as a local process.

The command is the image's ENTRYPOINT + the service's `command` / the container's `args`, the
environment is the image's ENV + the service's / container's env, exactly as rendered. Only what
exists solely inside a container or a cluster is substituted, and every substitution is recorded:

- paths the image holds (entrypoint script, venv, models): the repository files the Dockerfile
  COPYs there, found from its COPY instructions;
- the mounted pipeline file: the compose volume's host file / the chart's ConfigMap data;
- the Kafka bootstrap address: the test broker;
- the metrics port: a free loopback port (each container has its own network namespace);
- container-network host names (the OTel collector): a local OTLP/HTTP receiver;
- the pod name (downward API, static membership): a pod-like name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.deploykit.image import ROOT, stage

VENV = Path(sys.prefix)


@dataclass
class Launch:
    """What to run for one deployed worker, and what was changed to run it here."""

    name: str
    argv: list[str]
    env: dict[str, str]
    substituted: dict[str, tuple[str, str]] = field(default_factory=dict)

    def replace_env(self, key: str, value: str) -> None:
        self.substituted[key] = (self.env.get(key, ""), value)
        self.env[key] = value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_path(container_path: str, target: str = "worker") -> Path | None:
    """The repository file or folder the image's COPY put at `container_path` (None: not copied)."""
    copies: list[tuple[str, str]] = []
    name: str | None = target
    while name is not None:
        st = stage(name)
        copies += [
            (v[0], v[-1]) for flags, v in st.copies if len(v) == 2 and not any("--from" in f for f in flags)
        ]
        name = st.base if st.base in {"base", "builder"} else None
    for src, dst in copies:
        if container_path == dst:
            return ROOT / src
        if dst.startswith(container_path.rstrip("/") + "/"):
            suffix = dst[len(container_path.rstrip("/")) :]
            if src.endswith(suffix.lstrip("/")):
                return ROOT / src[: -len(suffix.lstrip("/"))].rstrip("/")
    if container_path.startswith("/opt/ontime/venv"):  # COPY --from=builder: the venv we run in
        return VENV / container_path.removeprefix("/opt/ontime/venv").lstrip("/")
    return None


def image_launch(name: str, command: list[str], env: dict[str, Any], target: str = "worker") -> Launch:
    """ENTRYPOINT + command and ENV + env of `target`, container paths mapped to the repository."""
    image = stage(target)
    launch = Launch(name, [*image.entrypoint, *command], {**image.env, **{k: str(v) for k, v in env.items()}})
    entry = host_path(launch.argv[0], target) if launch.argv[0].startswith("/") else None
    if entry is not None:
        launch.substituted["entrypoint"] = (launch.argv[0], str(entry))
        launch.argv[0] = str(entry)
    path = launch.env.get("PATH", "")
    local = [str(host_path(p, target) or p) for p in path.split(":") if p]
    launch.replace_env("PATH", ":".join([*local, os.environ.get("PATH", "")]))
    models = launch.env.get("ONTIME_MODELS_DIR")
    if models:
        mapped = host_path(models, target)
        assert mapped is not None and mapped.is_dir(), f"the image has no models at {models}"
        launch.replace_env("ONTIME_MODELS_DIR", str(mapped))
    return launch


def localise(launch: Launch, bootstrap: str, otlp_endpoint: str | None = None) -> Launch:
    """The network substitutions: broker, own metrics port, the collector's container host name
    (→ `otlp_endpoint`, a local OTLP receiver, or a closed loopback port)."""
    launch.replace_env("ONTIME_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
    if "ONTIME_WORKER__METRICS_PORT" in launch.env:
        launch.replace_env("ONTIME_WORKER__METRICS_PORT", str(free_port()))
    if "OTEL_EXPORTER_OTLP_ENDPOINT" in launch.env:
        launch.replace_env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint or f"http://127.0.0.1:{free_port()}")
    return launch


class Running:
    """The launched process, its log, and its health endpoint."""

    def __init__(self, launch: Launch, log: Path) -> None:
        self.launch = launch
        self.log = log
        env = {"PYTHONUNBUFFERED": "1", "HOME": os.environ.get("HOME", "/tmp"), **launch.env}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                launch.argv, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def port(self) -> int:
        return int(self.launch.env["ONTIME_WORKER__METRICS_PORT"])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def wait_ready(self, timeout: float = 180.0) -> str:
        """Poll /readyz until 200; the body says why (e.g. `ready: 2 partition(s) assigned`)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.launch.name} exited {self.proc.returncode}:\n{self.log_text()}")
            code, body = self.get("/readyz")
            if code == 200:
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.launch.name} not ready after {timeout} s ({code} {body}):\n{self.log_text()}"
                )
            time.sleep(0.2)  # polling a condition, not a fixed delay

    def stop(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM (what `docker stop` / the kubelet sends) → exit code and seconds to drain."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(timeout)
        return code, time.monotonic() - start

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def from_compose(model: dict[str, Any], service: str) -> Launch:
    """A compose service (after `deploykit.compose.load`) as a local launch."""
    svc = model["services"][service]
    target = svc["build"]["target"]
    image = stage(target)
    command = list(svc.get("command") or image.cmd)
    launch = image_launch(service, command, dict(svc.get("environment") or {}), target)
    if "entrypoint" in svc:  # compose's entrypoint replaces the image's (and drops its CMD)
        launch.argv = [*svc["entrypoint"], *command]
    for volume in svc.get("volumes", []):
        host, container, *_ = volume.split(":")
        for key, value in list(launch.env.items()):
            if value == container or value.startswith(container.rstrip("/") + "/"):
                launch.replace_env(key, str(ROOT / host) + value[len(container) :])
    return launch


def from_deployment(deployment: dict[str, Any], manifests: list[dict[str, Any]], workdir: Path) -> Launch:
    """A chart Deployment's container as a local launch; ConfigMap volumes become files in `workdir`."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    name = deployment["metadata"]["name"]
    pod_name = f"{name}-7d9c6b5f4-{os.getpid() % 100000:05d}"
    env: dict[str, str] = {}
    fieldrefs: list[str] = []
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod_name
            fieldrefs.append(item["name"])
        else:
            raise AssertionError(f"{name}: env {item['name']} needs a cluster: {item}")
    launch = image_launch(name, list(container.get("args", [])), env)
    if container.get("command"):
        launch.argv = [*container["command"], *container.get("args", [])]
    for key in fieldrefs:
        launch.substituted[key] = ("fieldRef metadata.name (downward API)", pod_name)
    configmaps = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" not in volume:
            continue
        local = workdir / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        for file_name, text in configmaps[volume["configMap"]["name"]]["data"].items():
            (local / file_name).write_text(text)
        prefix = mount["mountPath"].rstrip("/")
        for key, value in list(launch.env.items()):
            if value == prefix or value.startswith(prefix + "/"):
                launch.replace_env(key, str(local) + value[len(prefix) :])
    return launch


class OtlpSink:
    """A loopback stand-in for the OTel collector: accepts OTLP/HTTP trace exports, counts them."""

    def __init__(self) -> None:
        sink = self
        self.exports: list[tuple[str, int]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.exports.append((self.path, len(body)))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
