import json

import pytest
from pydantic import ValidationError

from schemas import ErrorRecord, Result
from schemas.export import JSON_DIR, rendered


def test_committed_json_schemas_match_the_models() -> None:
    for name, text in rendered().items():
        committed = (JSON_DIR / name).read_text()
        assert committed == text, f"schemas/json/{name} is stale: run python -m schemas.export"


def test_result_rejects_unknown_status_and_bad_sha() -> None:
    good = {
        "id": "x",
        "pipeline": "acoustic",
        "device": "mic-1",
        "label": "yes",
        "score": 0.9,
        "top": [{"label": "yes", "score": 0.9}],
        "status": "ok",
        "model": {"name": "m", "version": "1", "sha256": "a" * 64},
        "captured_ms": 1,
        "deadline_ms": 2,
        "completed_ms": 3,
        "stages": [],
    }
    assert Result.model_validate(good).label == "yes"
    with pytest.raises(ValidationError):
        Result.model_validate({**good, "status": "maybe"})
    with pytest.raises(ValidationError):
        Result.model_validate({**good, "model": {"name": "m", "version": "1", "sha256": "zz"}})
    assert json.loads(Result.model_validate(good).model_dump_json())["schema_version"] == 1


def test_error_record_reads_the_design_headers() -> None:
    record = ErrorRecord.from_headers(
        "dlq",
        {
            "ontime-id": "abc",
            "ontime-error-stage": "preprocess",
            "ontime-error-reason": "bad-shape",
            "ontime-error-detail": "frame has 3 bytes",
            "ontime-source-topic": "acoustic.raw",
            "ontime-source-partition": "2",
            "ontime-source-offset": "41",
            "ontime-deadline-ms": "17",
        },
    )
    assert (record.stage, record.reason, record.source_partition, record.source_offset) == (
        "preprocess",
        "bad-shape",
        2,
        41,
    )
    assert record.deadline_ms == 17


def test_event_schema_round_trips() -> None:
    from schemas import Event

    event = Event(
        id="mic-1@1000",
        pipeline="acoustic",
        device="mic-1",
        keyword="six",
        start_ms=1000,
        end_ms=1500,
        score=0.9,
        frames=["f1", "f2"],
        emitted_ms=1700,
        latency_ms=200,
    )
    assert Event.model_validate_json(event.model_dump_json()) == event
    with pytest.raises(ValidationError):
        Event.model_validate({**event.model_dump(), "score": 1.5})
