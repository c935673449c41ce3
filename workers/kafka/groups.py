"""Consumer groups seen from the admin side: who is a member, and waiting until each group holds partitions.

A worker is ready when its group has been assigned partitions; the demo, the benchmarks and the
deadline tests wait for that here, and only here, before they send a frame.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka.admin import AdminClient


def group_members(client: AdminClient, groups: Sequence[str]) -> dict[str, list[Any]]:
    """Members of each consumer group (a group that does not exist yet has none)."""
    out: dict[str, list[Any]] = {g: [] for g in groups}
    if not groups:
        return out
    for group, future in client.describe_consumer_groups(list(groups), request_timeout=10).items():
        with contextlib.suppress(Exception):  # an unknown or dead group is simply empty
            out[group] = list(future.result().members)
    return out


def partitions_held(members: Sequence[Any]) -> int:
    """Partitions assigned to a group's members, all together."""
    return sum(len(m.assignment.topic_partitions) for m in members if m.assignment)


def wait_assigned(
    client: AdminClient,
    groups: Sequence[str],
    timeout: float = 90.0,
    check: Callable[[], None] | None = None,
    on_assigned: Callable[[str, int], None] | None = None,
) -> set[str]:
    """Wait until each group has a member holding partitions; return the groups still waiting at `timeout`.

    `check` runs every round and may raise (a worker process that died); `on_assigned(group,
    partitions)` is told as each group becomes ready.
    """
    pending = set(groups)
    give_up = time.monotonic() + timeout
    while pending:
        if check is not None:
            check()
        for group, members in group_members(client, sorted(pending)).items():
            held = partitions_held(members)
            if held:
                pending.discard(group)
                if on_assigned is not None:
                    on_assigned(group, held)
        if pending and time.monotonic() > give_up:
            break
        if pending:
            time.sleep(0.25)  # group membership has no change notification
    return pending
