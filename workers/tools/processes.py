"""Stage workers as child processes, the way an SRE runs them: `ontime worker --stage X`.

The demo and the benchmarks both start one process per stage; each gets its own session so a ^C
in the terminal reaches only the parent, which then stops its children with SIGTERM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from workers.config.settings import BOOTSTRAP_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]


def spawn_worker(
    stage: str, pipeline: str, bootstrap: str, log: Path, flags: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start `ontime --pipeline P [flags] worker --stage stage`, its output appended to `log`."""
    return spawn_ontime(pipeline, bootstrap, log, [*flags, "worker", "--stage", stage])


def spawn_ontime(pipeline: str, bootstrap: str, log: Path, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start `ontime --pipeline P *args` in its own session, its output appended to `log`."""
    cmd = [sys.executable, "-m", "workers.cli", "--pipeline", pipeline, *args]
    return spawn_logged(cmd, log, {BOOTSTRAP_ENV: bootstrap})


def spawn_logged(cmd: Sequence[str], log: Path, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `cmd` from the repository root in its own session, its output appended to `log`."""
    env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as sink:
        return subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
