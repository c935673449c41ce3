"""The DLQ circuit breaker: systemic failures open it, device mistakes never do."""

from __future__ import annotations

from workers.loop.breaker import DlqBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_model_failing_on_every_frame_opens_the_circuit_after_min_frames() -> None:
    breaker = DlqBreaker(window=100, threshold=0.5, min_frames=40, clock=Clock())
    breaker.record(["model-error"] * 39)
    assert not breaker.open
    breaker.record(["model-error"])
    assert breaker.open and "model-error" in breaker.reason and breaker.trips == 1


def test_bad_input_from_devices_never_opens_it() -> None:
    breaker = DlqBreaker(window=100, threshold=0.5, min_frames=10, clock=Clock())
    breaker.record(["bad-shape", "bad-content-type", "bad-samples", "poison"] * 50)
    assert not breaker.open


def test_healthy_traffic_keeps_it_closed_below_the_threshold() -> None:
    breaker = DlqBreaker(window=100, threshold=0.5, min_frames=10, clock=Clock())
    for _ in range(20):
        breaker.record(["model-error", None, None])  # a third fail: a bad model would fail all
    assert not breaker.open


def test_after_the_cooldown_one_probe_batch_decides() -> None:
    clock = Clock()
    breaker = DlqBreaker(window=50, threshold=0.5, min_frames=10, cooldown_s=30, clock=clock)
    breaker.record(["model-error"] * 10)
    assert breaker.open and not breaker.allows_probe()
    clock.now += 30
    assert breaker.allows_probe()
    breaker.record(["model-error"] * 4 + [None])  # still failing: open again, cool-down restarts
    assert breaker.open and breaker.trips == 2 and not breaker.allows_probe()
    clock.now += 31
    breaker.record([None] * 5)  # the fix is deployed: closed, and the window starts afresh
    assert not breaker.open and breaker.reason == ""
    breaker.record(["model-error"] * 9)
    assert not breaker.open
