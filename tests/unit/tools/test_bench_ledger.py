"""The fault bench's ledger: final words, duplicates, losses, skipped ranges by offset, recovery."""

from __future__ import annotations

from workers.tools.bench.ledger import Ledger, Row


def test_each_frame_counts_once_by_its_final_word_and_extra_words_are_duplicates() -> None:
    ledger = Ledger()
    ledger.word("result", "a", appended_ms=1_000)
    ledger.word("result", "a", appended_ms=1_100)  # redelivered after a kill
    ledger.word("late", "b", reason="missed")
    ledger.word("dlq", "c", reason="bad-payload")
    row = ledger.tally(Row("kill", "at-least-once"), ["a", "b", "c", "d"], {}, ended_ms=0)
    assert (row.sent, row.results, row.late, row.dlq, row.lost) == (4, 1, 1, 1, 1)
    assert (row.duplicates, row.max_copies) == (1, 2)
    assert row.late_reasons == {"missed": 1}


def test_a_skipped_range_accounts_the_frames_at_its_offsets_not_others() -> None:
    ledger = Ledger()
    for offset, frame in enumerate(["r0", "r1", "r2", "r3"]):
        ledger.offset("p.raw", 1, 10 + offset, frame)
    ledger.offset("p.raw", 0, 11, "other-partition")
    ledger.offset("p.features", 1, 11, "other-topic")
    ledger.skipped("p.raw", 1, 11, 2)  # r1 and r2
    ids = ["r0", "r1", "r2", "r3", "other-partition", "other-topic"]
    assert ledger.accounted(ids) == 2
    row = ledger.tally(Row("freeze", "exactly-once"), ids, {}, ended_ms=0)
    assert (row.late, row.lost, row.duplicates) == (2, 4, 0)
    assert row.late_reasons == {"skipped": 2}


def test_recovery_is_the_first_result_of_a_frame_sent_after_the_fault_ended() -> None:
    ledger = Ledger()
    ledger.word("result", "before", appended_ms=20_500)  # backlog, sent during the fault
    ledger.word("result", "after-1", appended_ms=23_000)
    ledger.word("result", "after-2", appended_ms=22_000)
    sent = {"before": 15_000, "after-1": 20_100, "after-2": 20_200}
    row = ledger.tally(Row("kill", "at-least-once"), list(sent), sent, ended_ms=20_000)
    assert row.recover_s == 2.0
    none_after = ledger.tally(Row("kill", "at-least-once"), ["before"], sent, ended_ms=20_000)
    assert none_after.recover_s is None


def test_a_lost_frame_is_reported_after_the_farthest_topic_it_reached() -> None:
    ledger = Ledger()
    ledger.offset("p.raw", 0, 1, "stuck-in-infer")
    ledger.offset("p.features", 0, 7, "stuck-in-infer")
    ledger.offset("p.raw", 0, 2, "stuck-in-preprocess")
    ledger.offset("p.raw", 0, 3, "answered")
    ledger.word("result", "answered")
    row = ledger.tally(
        Row("kill", "at-least-once"), ["stuck-in-infer", "stuck-in-preprocess", "answered"], {}, 0
    )
    assert row.lost_after == {"features": 1, "raw": 1}
