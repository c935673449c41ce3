"""`/metrics`, `/livez` and `/readyz` on one port per worker, served by a daemon thread.

Liveness watches the poll loop: a stuck loop stops calling `poll_turned`, and after
`liveness_timeout_s` `/livez` answers 503 so the orchestrator restarts the pod. Readiness
waits for every stage's models to load and warm up (`started`) and for the consumer group to
hand out its assignment; a replica that got zero partitions is still ready (a warm standby). A
worker that holds its input (DLQ circuit open, broker unreachable) is alive but not ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from workers.telemetry.hooks import Telemetry
from workers.telemetry.logs import event

log = logging.getLogger("ontime.health")


class Health(Telemetry):
    """Liveness and readiness state of one worker, and the HTTP server that reports it."""

    def __init__(
        self,
        stages: Sequence[str],
        registry: CollectorRegistry | None = None,
        *,
        liveness_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stages = list(stages)
        self.registry = registry
        self.liveness_timeout_s = liveness_timeout_s
        self._clock = clock
        self._started: set[str] = set()
        self._stopped = 0
        self._last_turn: float | None = None
        self._assigned: int | None = None
        self._holding: str | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- hooks -------------------------------------------------------------------------------

    def started(self, pipeline: str, stage: str) -> None:
        self._started.add(stage)
        self._last_turn = self._clock()  # the loop starts now; give it a full timeout to turn

    def poll_turned(self) -> None:
        self._last_turn = self._clock()

    def assignment(self, partitions: Sequence[tuple[str, int]]) -> None:
        self._assigned = len(partitions)

    def holding(self, reason: str | None) -> None:
        self._holding = reason

    def stopped(self) -> None:
        # One worker per process runs all its stages, and it calls this once on leaving.
        self._stopped += 1
        self.close()

    # -- probes ------------------------------------------------------------------------------

    def live(self) -> tuple[bool, str]:
        """Alive unless the poll loop, once running, has not turned for `liveness_timeout_s`."""
        if self._last_turn is None:
            return True, "starting: models loading"
        idle = self._clock() - self._last_turn
        if idle > self.liveness_timeout_s:
            return False, f"poll loop idle for {idle:.1f} s (limit {self.liveness_timeout_s:.1f} s)"
        return True, f"poll loop turned {idle:.1f} s ago"

    def ready(self) -> tuple[bool, str]:
        """Ready once every stage is warmed up and the group assignment arrived."""
        if self._stopped:
            return False, "stopping"
        waiting = [s for s in self.stages if s not in self._started]
        if waiting:
            return False, f"models not loaded and warmed up: {', '.join(waiting)}"
        if self._assigned is None:
            return False, "no partition assignment yet"
        if self._holding is not None:
            return False, f"holding input: {self._holding}"
        return True, f"ready: {self._assigned} partition(s) assigned"

    # -- server ------------------------------------------------------------------------------

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Start the daemon server thread; returns the bound port (0 picks a free one)."""
        handler = _handler(self)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="ontime-health",
            kwargs={"poll_interval": 0.5},
            daemon=True,
        )
        self._thread.start()
        bound = int(self._server.server_address[1])
        event(log, "health-listening", port=bound, paths="/metrics,/livez,/readyz")
        return bound

    @property
    def port(self) -> int | None:
        """The bound port, or None when not serving."""
        return None if self._server is None else int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ontime-health"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and health.registry is not None:
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(health.registry), content_type)
            elif path == "/livez":
                ok, why = health.live()
                self._reply(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
            elif path == "/readyz":
                ok, why = health.ready()
                self._reply(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics, /livez, /readyz\n", "text/plain; charset=utf-8")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes hit every few seconds; one log line each would drown the notable ones."""

    return Handler
