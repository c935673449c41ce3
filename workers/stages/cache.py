"""A bounded LRU from input content hash to a stage's output, for devices that repeat themselves.

Silence, a stuck sensor or a replayed recording produce byte-identical frames; the answer of a
deterministic model to identical bytes is identical, so it can be served without compute. The key
covers the payload, its content type and the model identity, so a new model never serves an old
answer. Off by default (StageSpec.cache); entries may also expire after `ttl_ms`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import numpy as np

from workers.messages.deadline import Clock, now_ms

V = TypeVar("V")


def owned(row: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copies of a row's arrays: a row sliced from a batch output is a view that keeps the whole
    batch's buffers alive, so caching it would hold up to max_size× the memory it accounts for."""
    return {name: np.array(array, copy=True) for name, array in row.items()}


def row_nbytes(row: Mapping[str, np.ndarray]) -> int:
    """Bytes a cached row really holds (its arrays own their data: see `owned`)."""
    return sum(int(array.nbytes) for array in row.values())


def content_key(payload: bytes | None, content_type: str, model: str) -> bytes:
    """BLAKE2b-128 of (model, content type, payload): collision-safe and fast on 64 KB frames."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (model.encode(), content_type.encode(), payload or b""):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.digest()


class ResultCache(Generic[V]):
    """Least-recently-used map with hit, miss and eviction counters."""

    def __init__(
        self,
        max_entries: int,
        ttl_ms: float | None = None,
        clock: Clock = now_ms,
        size_of: Callable[[V], int] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._size_of = size_of
        self._entries: OrderedDict[bytes, tuple[float, V]] = OrderedDict()
        self.nbytes = 0  # accounted size of the values held (0 without `size_of`)
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and self.ttl_ms is not None and self._clock() - entry[0] > self.ttl_ms:
            self._drop(key)
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: bytes, value: V) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock(), value)
        self.nbytes += self._size(value)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    def _drop(self, key: bytes) -> None:
        _, value = self._entries.pop(key)
        self.nbytes -= self._size(value)

    def _size(self, value: V) -> int:
        return self._size_of(value) if self._size_of is not None else 0

    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
