"""A three-node KRaft cluster on loopback (each node broker and controller, static quorum).

For fault tests that lose a broker: replication factor 3 and min ISR 2 everywhere, so with one
node down producers with acks=all, consumer groups and transactions go on. Each node is a
`LocalBroker` in <state_dir>/node-<id>; the nodes start together because none is ready before a
majority of controllers is up.
"""

from __future__ import annotations

import threading
from pathlib import Path

from workers.localkafka.broker import BrokerStartError, LocalBroker
from workers.localkafka.config import HOST, free_port, new_cluster_id


class LocalCluster:
    """`nodes` local brokers forming one cluster; `kill(i)` / `restart(i)` one of them."""

    def __init__(self, state_dir: Path, nodes: int = 3, heap_mb: int = 384) -> None:
        taken: set[int] = set()

        def pick() -> int:
            port = free_port(exclude=frozenset(taken))
            taken.add(port)
            return port

        self.ports = {i: (pick(), pick()) for i in range(1, nodes + 1)}  # id → (client, controller)
        voters = {i: controller for i, (_, controller) in self.ports.items()}
        cluster_id = new_cluster_id()
        self.nodes = {
            i: LocalBroker(
                Path(state_dir) / f"node-{i}",
                heap_mb=heap_mb,
                node_id=i,
                voters=voters,
                cluster_id=cluster_id,
            )
            for i in self.ports
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{client}" for client, _ in self.ports.values())

    def start(self, timeout: float = 240.0) -> str:
        """Start every node at once and return the bootstrap servers when all are ready."""
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                self.restart(i, timeout)
            except BaseException as exc:  # reported below, in this thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise BrokerStartError(f"cluster did not start: {errors[0]}") from errors[0]
        return self.bootstrap

    def restart(self, node: int, timeout: float = 240.0) -> None:
        """Start one node on its ports and data (after `kill`, while the others run)."""
        client, controller = self.ports[node]
        self.nodes[node].start(port=client, controller_port=controller, timeout=timeout)

    def kill(self, node: int) -> bool:
        """kill -9 one node's JVM."""
        return self.nodes[node].kill()

    def stop(self) -> None:
        for broker in self.nodes.values():
            broker.stop()
