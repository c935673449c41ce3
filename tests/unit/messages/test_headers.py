from workers.messages import headers as h


def test_stage_times_round_trip_and_skip_garbage() -> None:
    times = [h.StageTime("preprocess", 1.5, 2.25), h.StageTime("infer", 0.0, 10.0)]
    text = h.render_stage_ms(times)
    assert text == "preprocess=1.50/2.25,infer=0.00/10.00"
    assert h.parse_stage_ms(text + ",junk,postprocess=x/1") == times


def test_as_dict_decodes_and_keeps_last_value() -> None:
    decoded = h.as_dict([("a", b"1"), ("b", None), ("a", b"\xff2")])
    assert decoded == {"a": "\ufffd2", "b": ""}
