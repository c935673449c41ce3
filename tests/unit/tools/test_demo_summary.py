"""The demo summary's false accepts: words that are no keyword, answered as one."""

from __future__ import annotations

import json

from workers.messages import headers as h
from workers.tools.demo import _false_accepts
from workers.tools.devices import SendReport, SentFrame
from workers.tools.liveview import Tally, outcome_of

SHA = "0" * 64


def _result(frame_id: str, label: str) -> bytes:
    return json.dumps(
        {
            "id": frame_id,
            "pipeline": "acoustic",
            "device": "mic-0001",
            "label": label,
            "score": 0.9,
            "top": [{"label": label, "score": 0.9}],
            "status": "ok",
            "model": {"name": "classifier", "version": "1", "sha256": SHA},
            "captured_ms": 1000,
            "deadline_ms": 1250,
            "completed_ms": 1040,
            "stages": [],
        }
    ).encode()


def test_false_accepts_count_unknown_words_answered_as_a_keyword() -> None:
    report = SendReport(topic="acoustic.raw", devices=1, rate=1.0)
    sent = {"a": "_unknown_", "b": "_unknown_", "c": "_unknown_", "d": "seven", "e": "_background_"}
    answers = {"a": "seven", "b": "_unknown_", "c": "_background_", "d": "three", "e": "two"}
    tally = Tally()
    for frame_id, label in sent.items():
        report.frames[frame_id] = SentFrame(frame_id, "mic-0001", label, 1000, "test")
        tally.add(outcome_of("result", _result(frame_id, answers[frame_id]), [(h.ID, frame_id.encode())]))
    # Only true `_unknown_` frames count; a keyword misheard as another is an error, not a false accept.
    assert _false_accepts(report, tally) == (1, 3)


def test_no_unknown_frames_means_nothing_to_report() -> None:
    assert _false_accepts(SendReport(topic="t", devices=1, rate=1.0), Tally()) == (0, 0)
