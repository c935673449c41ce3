"""A second look at frames a fault row counted as lost: were they written and the bench missed
them, written in aborted transactions only, or never written at all?

The row's reader is one long-lived `read_committed` consumer that rode out the fault itself; a
fresh consumer per isolation level reads every partition of the pipeline's topics from the
beginning and says on which topic each lost frame appears. Found by the fresh `read_committed`
reader: the pipeline answered it and the bench's reader missed it. Only by `read_uncommitted`:
written in transactions that were aborted (the stage moved on without redoing it). Neither:
the stage never produced it.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from workers.messages import headers as h

READ_FOR_S = 60.0
IDLE_S = 3.0


def find(bootstrap: str, topics: Sequence[str], ids: set[str], isolation: str) -> Counter[str]:
    """How many of `ids` a fresh reader finds on each topic (short topic name → count)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-recheck-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "log_level": 0,
        }
    )
    found: dict[str, set[str]] = {}
    try:
        meta = consumer.list_topics(timeout=10)
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            if t in meta.topics
            for p in meta.topics[t].partitions
        ]
        consumer.assign(parts)
        give_up, idle_since = time.monotonic() + READ_FOR_S, None
        while time.monotonic() < give_up and (idle_since is None or time.monotonic() - idle_since < IDLE_S):
            msgs = consumer.consume(num_messages=500, timeout=0.5)
            if msgs:  # idle counts only once records flow: the first fetch can be slow
                idle_since = time.monotonic()
            for msg in msgs:
                if msg.error() is not None:
                    continue
                frame = h.as_dict(msg.headers()).get(h.ID, "")  # type: ignore[arg-type]
                if frame in ids:
                    found.setdefault(str(msg.topic()).rsplit(".", 1)[-1], set()).add(frame)
    except KafkaException:
        pass
    finally:
        consumer.close()
    return Counter({topic: len(frames) for topic, frames in found.items()})


def recheck(bootstrap: str, topics: Sequence[str], lost: Sequence[str]) -> str:
    """A note for the row: where fresh readers find the lost frames. `topics[0]` is the input
    topic: a frame not even there was acknowledged to the device but never written."""
    ids = set(lost)
    notes = []
    for isolation in ("read_committed", "read_uncommitted"):
        where = find(bootstrap, topics, ids, isolation)
        found = ", ".join(f"{t} {n}" for t, n in sorted(where.items())) or "none"
        missing = len(ids) - where.get(topics[0].rsplit(".", 1)[-1], 0)
        notes.append(f"{isolation}: {found}" + (f" (not on the input topic: {missing})" if missing else ""))
    return f"recheck of the {len(ids)} lost by fresh readers: " + "; ".join(notes)
