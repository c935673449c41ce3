"""The content-hash LRU: eviction order, counters, TTL under a fake clock, and key separation."""

from __future__ import annotations

import pytest

from workers.stages.cache import ResultCache, content_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hits_and_misses_are_counted() -> None:
    cache: ResultCache[str] = ResultCache(4)
    assert cache.get(b"a") is None
    cache.put(b"a", "A")
    assert cache.get(b"a") == "A"
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.hit_rate() == pytest.approx(0.5)


def test_least_recently_used_is_evicted_first() -> None:
    cache: ResultCache[int] = ResultCache(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1  # a is now the most recent
    cache.put(b"c", 3)
    assert cache.get(b"b") is None
    assert cache.get(b"a") == 1 and cache.get(b"c") == 3
    assert len(cache) == 2 and cache.evictions == 1


def test_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache: ResultCache[int] = ResultCache(8, ttl_ms=100, clock=clock)
    cache.put(b"a", 1)
    clock.now = 100
    assert cache.get(b"a") == 1
    clock.now = 100.5
    assert cache.get(b"a") is None
    assert len(cache) == 0


def test_key_covers_payload_content_type_and_model() -> None:
    base = content_key(b"\x00\x01", "t;shape=1x2", "m:1:ab")
    assert base == content_key(b"\x00\x01", "t;shape=1x2", "m:1:ab")
    assert base != content_key(b"\x00\x02", "t;shape=1x2", "m:1:ab")
    assert base != content_key(b"\x00\x01", "t;shape=2x1", "m:1:ab")
    assert base != content_key(b"\x00\x01", "t;shape=1x2", "m:2:ab")
    # Length-prefixed parts: moving bytes between fields changes the key.
    assert content_key(b"ab", "c", "m") != content_key(b"b", "ac", "m")
    assert content_key(None, "c", "m") == content_key(b"", "c", "m")


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ResultCache(0)
