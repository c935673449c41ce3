"""Find or start a broker: the cluster named in the environment, a local broker already running, or a new one.

The one answer for `ontime broker up`, `ontime demo`, `ontime bench` and the integration tests,
so they all honour ONTIME_KAFKA__BOOTSTRAP_SERVERS the same way and never start a second broker
next to a running one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from workers.config.settings import BOOTSTRAP_ENV, bootstrap_from_env
from workers.localkafka.broker import LocalBroker, default_state_dir
from workers.localkafka.config import DEFAULT_CONTROLLER_PORT, DEFAULT_PORT, port_is_free


@dataclass(frozen=True, slots=True)
class FoundBroker:
    """Where Kafka is, and the broker to stop afterwards if this process started it."""

    bootstrap: str
    started: LocalBroker | None
    where: str


def default_ports() -> tuple[int | None, int | None]:
    """The well-known ports (19092, 19093) when both are free, else (None, None): any free ones."""
    if port_is_free(DEFAULT_PORT) and port_is_free(DEFAULT_CONTROLLER_PORT):
        return DEFAULT_PORT, DEFAULT_CONTROLLER_PORT
    return None, None


def find_or_start(
    state_dir: Path | None = None,
    well_known_ports: bool = True,
    timeout: float = 120.0,
    announce: Callable[[str], None] | None = None,
) -> FoundBroker:
    """The existing cluster from the environment, else the broker running in `state_dir`, else a new one.

    `well_known_ports` starts a new broker on 19092/19093 when they are free (what a developer
    expects); tests pass False to take any free ports. `announce` hears, before a start, that it
    may take a while. Raises BrokerError (JarFetchError too).
    """
    external = bootstrap_from_env()
    if external is not None:
        return FoundBroker(external, None, f"existing cluster from {BOOTSTRAP_ENV}")
    broker = LocalBroker(state_dir or default_state_dir())
    running = broker.state()
    if running is not None:
        return FoundBroker(running.bootstrap, None, f"local broker already running (pid {running.pid})")
    port, controller_port = default_ports() if well_known_ports else (None, None)
    if announce is not None:
        announce("starting a local Kafka broker (the first run fetches its jars with Maven, once)…")
    bootstrap = broker.start(port=port, controller_port=controller_port, timeout=timeout)
    return FoundBroker(bootstrap, broker, f"local broker started here ({broker.state_dir})")


@contextlib.contextmanager
def broker_for_run(state_dir: Path | None = None, well_known_ports: bool = True) -> Iterator[FoundBroker]:
    """`find_or_start`, and stop the broker on exit only if it was started here."""
    found = find_or_start(state_dir, well_known_ports)
    try:
        yield found
    finally:
        if found.started is not None:
            found.started.stop()
