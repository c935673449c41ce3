import pytest

from workers.errors import BadHeader
from workers.messages import headers as h


def test_stage_times_round_trip_and_skip_garbage() -> None:
    times = [h.StageTime("preprocess", 1.5, 2.25), h.StageTime("infer", 0.0, 10.0)]
    text = h.render_stage_ms(times)
    assert text == "preprocess=1.50/2.25,infer=0.00/10.00"
    assert h.parse_stage_ms(text + ",junk,postprocess=x/1") == times


def test_as_dict_decodes_and_keeps_last_value() -> None:
    decoded = h.as_dict([("a", b"1"), ("b", None), ("a", b"\xff2")])
    assert decoded == {"a": "\ufffd2", "b": ""}


def test_stage_ms_keeps_known_stages_once_with_sane_finite_numbers() -> None:
    text = "preprocess=1/2,preprocess=9/9,bogus=1/1,infer=nan/1,postprocess=1/inf,infer=-1/1,infer=3/4"
    assert h.parse_stage_ms(text) == [h.StageTime("preprocess", 1, 2), h.StageTime("infer", 3, 4)]
    assert h.parse_stage_ms("infer=1e300/1") == []


def test_a_huge_stage_ms_header_is_ignored_and_rendering_never_grows() -> None:
    huge = "infer=1/1," * 10_000
    assert h.parse_stage_ms(huge) == []
    top = h.MAX_STAGE_MS
    bounded = ",".join(f"{s}={top}/{top}" for s in ("preprocess", "infer", "postprocess"))
    rendered = h.render_stage_ms(h.parse_stage_ms(bounded))
    assert len(rendered) <= h.MAX_STAGE_MS_CHARS


def test_decode_reads_only_pipeline_headers_strictly() -> None:
    assert h.decode([("x-note", b"\xff"), (h.ID, b"a"), (h.ID, b"b")]) == {h.ID: "b"}
    with pytest.raises(BadHeader):
        h.decode([(h.CONTENT_TYPE, b"\xff")])
    with pytest.raises(BadHeader):
        h.decode([(h.ID, "\udcff")])


def test_internal_header_names() -> None:
    names = [h.STATUS, "ontime-error-anything", "ontime-source-x", h.ID, h.LATE_COUNT, h.STATUS]
    assert h.internal_names([(n, b"") for n in names]) == (
        h.STATUS,
        "ontime-error-anything",
        "ontime-source-x",
        h.LATE_COUNT,
    )
