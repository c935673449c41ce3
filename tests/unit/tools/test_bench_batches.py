"""The fault bench's reading of batch sizes from the workers' `ontime_batch_size` histogram."""

from __future__ import annotations

from workers.tools.bench.batches import largest_new, parse_buckets

PAGE = """# TYPE ontime_batch_size histogram
ontime_batch_size_bucket{pipeline="p",le="1.0",x="p",stage="infer"} 3.0
ontime_batch_size_bucket{le="2.0",pipeline="p",stage="infer"} 3.0
ontime_batch_size_bucket{le="4.0",pipeline="p",stage="infer"} 4.0
ontime_batch_size_bucket{le="+Inf",pipeline="p",stage="infer"} 4.0
ontime_batch_size_count{pipeline="p",stage="infer"} 4.0
"""


def test_buckets_are_read_per_stage() -> None:
    assert parse_buckets(PAGE) == {"infer": {1.0: 3.0, 2.0: 3.0, 4.0: 4.0, float("inf"): 4.0}}


def test_the_largest_new_batch_is_the_smallest_bound_holding_every_new_one() -> None:
    inf = float("inf")
    before = {1.0: 3.0, 2.0: 3.0, 4.0: 4.0, 8.0: 4.0, inf: 4.0}
    after = {1.0: 4.0, 2.0: 4.0, 4.0: 5.0, 8.0: 6.0, inf: 6.0}  # one of 1, one of 5..8 (cumulative)
    assert largest_new(before, after) == 8
    assert largest_new(after, after) == 0
    restarted = {1.0: 1.0, 2.0: 2.0, 4.0: 2.0, 8.0: 2.0, inf: 2.0}  # fewer than before: new process
    assert largest_new(after, restarted) == 2
