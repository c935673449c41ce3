"""A bounded LRU from input content hash to a stage's output, for devices that repeat themselves.

Silence, a stuck sensor or a replayed recording produce byte-identical frames; the answer of a
deterministic model to identical bytes is identical, so it can be served without compute. The key
covers the payload, its content type and the model identity, so a new model never serves an old
answer. Off by default (StageSpec.cache); entries may also expire after `ttl_ms`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Generic, TypeVar

from workers.messages.deadline import Clock, now_ms

V = TypeVar("V")


def content_key(payload: bytes | None, content_type: str, model: str) -> bytes:
    """BLAKE2b-128 of (model, content type, payload): collision-safe and fast on 64 KB frames."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (model.encode(), content_type.encode(), payload or b""):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.digest()


class ResultCache(Generic[V]):
    """Least-recently-used map with hit, miss and eviction counters."""

    def __init__(self, max_entries: int, ttl_ms: float | None = None, clock: Clock = now_ms) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and self.ttl_ms is not None and self._clock() - entry[0] > self.ttl_ms:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: bytes, value: V) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evictions += 1

    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
