"""Toxiproxy on loopback: a TCP proxy between workers and broker whose faults we switch over HTTP.

The server is Shopify's Go binary, built once with `go install` into <cache>/go-bin (ONTIME_CACHE_DIR
overrides ~/.cache/ontime) and found there afterwards. Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from workers.localkafka.config import HOST, cache_root, free_port
from workers.tools.bench.harness import BenchError

TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION = "v2.12.0"


def go_bin_dir() -> Path:
    return cache_root() / "go-bin"


def toxiproxy_server() -> Path:
    """The toxiproxy server binary: cached, or built now with `go install` (needs Go >= 1.23)."""
    binary = go_bin_dir() / f"toxiproxy-server-{TOXIPROXY_VERSION}"
    for found in (binary, go_bin_dir() / "server"):  # `server`: a plain `GOBIN=… go install` of it
        if found.is_file() and os.access(found, os.X_OK):
            return found
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if go is None:
        raise BenchError(
            f"no toxiproxy server at {binary} and no `go` to build it (.ci/system-deps installs Go)"
        )
    go_bin_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=go_bin_dir()) as tmp:
        done = subprocess.run(
            [go, "install", "-trimpath", f"{TOXIPROXY_MODULE}@{TOXIPROXY_VERSION}"],
            env={**os.environ, "GOBIN": tmp, "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        built = Path(tmp) / "server"
        if done.returncode != 0 or not built.is_file():
            raise BenchError(f"building toxiproxy failed:\n{(done.stdout + done.stderr)[-3000:]}")
        built.replace(binary)
    return binary


class Toxiproxy:
    """One toxiproxy server process of our own and the proxies it serves."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        binary = toxiproxy_server()
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [str(binary), "-host", HOST, "-port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        give_up = time.monotonic() + timeout_s
        while True:
            try:
                self._call("GET", "/version")
                return
            except (OSError, BenchError):
                if self.proc.poll() is not None or time.monotonic() > give_up:
                    raise BenchError(f"toxiproxy did not start; see {self.log}") from None
                time.sleep(0.1)  # the HTTP port has no readiness event

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise BenchError(f"toxiproxy {method} {path}: {exc.code} {exc.read()[:300]!r}") from None
        return json.loads(text) if text.strip() else None

    def proxy(self, name: str, listen_port: int, upstream_port: int) -> None:
        """Listen on 127.0.0.1:listen_port and forward to 127.0.0.1:upstream_port."""
        self._call(
            "POST",
            "/proxies",
            {
                "name": name,
                "listen": f"{HOST}:{listen_port}",
                "upstream": f"{HOST}:{upstream_port}",
                "enabled": True,
            },
        )

    def add_toxic(self, proxy: str, name: str, kind: str, stream: str, **attributes: int) -> None:
        """A toxic on one direction (`upstream` = client→server, `downstream` = server→client)."""
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes},
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def enable(self, proxy: str, enabled: bool) -> None:
        """Disabled: every connection through the proxy is closed and new ones are refused."""
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})
