"""The four contenders of `ontime bench goodput`, each a set of OS processes on a private pipeline.

- `ontime split`: `ontime worker --stage X`, one process per stage (the README's deployment);
- `ontime fused`: `ontime worker --stage preprocess,infer,postprocess`, one process;
- `quix`: the Quix Streams application of `peers/quix_app.py` (in .venv/quix);
- `plain loop`: the confluent-kafka loop of `peers/plain_loop.py`;
- `ontime split eos` (on request): the split deployment with `exactly_once` on every stage.

ontime is driven only through its CLI, so the benchmark measures whatever the checked-out
branch's workers do. The peers have no deadlines; the benchmark judges their results against
the same deadline (capture time + budget).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from workers.config.settings import OntimeSettings
from workers.config.spec import STAGE_ORDER
from workers.tools.bench.harness import BenchError, Workers, wait_groups, write_pipeline
from workers.tools.processes import spawn_logged

FUSED = ",".join(STAGE_ORDER)


def default_quix_python() -> Path:
    """The interpreter of the Quix Streams environment that `make setup` builds next to .venv's."""
    return Path(sys.prefix) / "quix" / "bin" / "python"


class Running(Protocol):
    """Processes of one contender on one pipeline."""

    @property
    def pids(self) -> list[int]: ...
    def start(self, ready_timeout_s: float = 90.0) -> None: ...
    def check_alive(self) -> None: ...
    def stop(self, timeout_s: float = 30.0) -> None: ...


class PeerProcess:
    """One peer program (`python -m workers.tools.bench.peers.<module>`) reading P.raw."""

    def __init__(self, settings: OntimeSettings, run_dir: Path, module: str, python: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.module = module
        self.python = python
        self.group = f"{settings.pipeline.name}.{module}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = run_dir / f"{settings.pipeline.name}-{module}.log"

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def start(self, ready_timeout_s: float = 90.0) -> None:
        if not self.python.exists():
            raise BenchError(f"{self.module}: no interpreter at {self.python}; run `make setup`")
        path = write_pipeline(self.settings, self.run_dir)
        cmd = [
            str(self.python),
            "-m",
            f"workers.tools.bench.peers.{self.module}",
            "--pipeline",
            str(path),
            "--bootstrap",
            self.settings.kafka.bootstrap_servers,
            "--group",
            self.group,
            "--models-dir",
            str(self.settings.models_dir),
        ]
        self.proc = spawn_logged(cmd, self.log, {})
        wait_groups(self.settings, [self.group], ready_timeout_s, self.check_alive)

    def check_alive(self) -> None:
        if self.proc is not None and (code := self.proc.poll()) is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-20:]
            raise BenchError(f"{self.module} exited with {code}:\n" + "\n".join(tail))

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@dataclass(frozen=True)
class Contender:
    """A way to run the pipeline's models on Kafka; `deadlines` says whether it sheds late work."""

    name: str
    deadlines: bool
    processes: Sequence[str] = ()  # ontime: the --stage value of each worker process
    peer: str = ""  # peers: the module under workers.tools.bench.peers
    exactly_once: bool = False  # ontime: Kafka transactions around every batch of every stage

    def launch(self, settings: OntimeSettings, run_dir: Path, quix_python: Path) -> Running:
        """Processes for this contender on `settings`' pipeline (not started yet)."""
        if self.processes:
            if self.exactly_once:
                data = settings.pipeline.model_dump()
                for stage in data["stages"].values():
                    stage["exactly_once"] = True
                pipeline = type(settings.pipeline).model_validate(data)
                settings = settings.model_copy(update={"pipeline": pipeline})
            return Workers(settings, run_dir, self.processes)
        python = quix_python if self.peer == "quix_app" else Path(sys.executable)
        return PeerProcess(settings, run_dir, self.peer, python)


CONTENDERS = {
    c.name: c
    for c in (
        Contender("ontime split", True, processes=STAGE_ORDER),
        Contender("ontime fused", True, processes=(FUSED,)),
        Contender("quix", False, peer="quix_app"),
        Contender("plain loop", False, peer="plain_loop"),
    )
}
# Not in the default run: `--contenders "ontime split,ontime split eos"` measures what exactly-once costs.
EXTRA_CONTENDERS = {"ontime split eos": Contender("ontime split eos", True, STAGE_ORDER, exactly_once=True)}
