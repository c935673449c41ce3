"""How large the batches of a fault row were: the bound its at-least-once duplicates are held to.

The fault bench runs each stage worker with `--metrics-port` and reads its `ontime_batch_size`
histogram twice a second. Between two reads, the new batches all fall at or under the smallest
bucket bound whose count grew as much as the total (buckets 1, 2, 4, … 64: a full batch of 16, 32
or 64 reads exactly); the row keeps the largest such bound per stage. A worker killed and
restarted starts its histogram again at zero, which counts as all new.
"""

from __future__ import annotations

import re
import subprocess
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from workers.config.settings import OntimeSettings
from workers.config.spec import STAGE_ORDER
from workers.localkafka.config import HOST, free_port
from workers.tools.bench.harness import WorkerProcess, Workers
from workers.tools.processes import spawn_ontime

SCRAPE_EVERY_S = 0.5
_BUCKET = re.compile(r"^ontime_batch_size_bucket\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')

Buckets = dict[float, float]  # le → cumulative count


class MeteredWorkers(Workers):
    """Stage workers that serve /metrics, each stage on one port for its whole life (respawns too)."""

    def __init__(
        self, settings: OntimeSettings, run_dir: Path, processes: Sequence[str] = STAGE_ORDER
    ) -> None:
        super().__init__(settings, run_dir, processes)
        self.ports = {p: free_port() for p in self.processes}

    def _spawn(self, stage: str) -> WorkerProcess:
        log = self.run_dir / f"{self.settings.pipeline.name}-{stage.replace(',', '+')}.log"
        args = ["worker", "--stage", stage, "--metrics-port", str(self.ports[stage])]
        proc: subprocess.Popen[bytes] = spawn_ontime(
            str(self.pipeline_file), self.settings.kafka.bootstrap_servers, log, args
        )
        return WorkerProcess(stage, proc, log)


def parse_buckets(text: str) -> dict[str, Buckets]:
    """`ontime_batch_size` bucket counts per stage from a Prometheus text page."""
    out: dict[str, Buckets] = {}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(1)))
            if "stage" in labels and "le" in labels:
                out.setdefault(labels["stage"], {})[float(labels["le"])] = float(m.group(2))
    return out


def largest_new(before: Buckets, after: Buckets) -> int:
    """Upper bound on the largest batch observed between two reads (0: no new batch)."""
    if after.get(float("inf"), 0.0) < before.get(float("inf"), 0.0):
        before = {}  # the worker restarted: its histogram began again
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return 0
    for le in sorted(k for k in after if k != float("inf")):
        if after[le] - before.get(le, 0.0) >= total:
            return int(le)
    return int(max((k for k in after if k != float("inf")), default=0)) + 1


class BatchWatch:
    """Reads every worker's histogram in a thread; `take()` returns and resets the largest batch
    per stage since the last call."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self._last: dict[str, Buckets] = {}
        self._largest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-faults-batches", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def take(self) -> dict[str, int]:
        self.read_once()
        with self._lock:
            out, self._largest = self._largest, {}
        return out

    def read_once(self) -> None:
        for process, port in self.ports.items():
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as page:
                    text = page.read().decode()
            except OSError:  # killed, restarting, or the broker fault froze it: next read
                continue
            for stage, now in parse_buckets(text).items():
                key = f"{process}:{stage}"
                with self._lock:
                    size = largest_new(self._last.get(key, {}), now)
                    self._last[key] = now
                    if size:
                        self._largest[stage] = max(self._largest.get(stage, 0), size)

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_EVERY_S):
            self.read_once()
