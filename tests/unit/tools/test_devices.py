"""The device fleet without a broker: its schedule, headers, clip order and report."""

from __future__ import annotations

import itertools
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipelines.vision import png
from workers.config.settings import load_settings
from workers.errors import ConfigError
from workers.messages import headers as h
from workers.tools.devices import (
    Fleet,
    SendReport,
    SentFrame,
    device_ids,
    frame_file_name,
    frame_headers,
    kcat_example,
    schedule,
)


@dataclass(frozen=True)
class FakeClip:
    """Stands in for a recording only where no broker or model is involved."""

    label: str
    pcm: np.ndarray
    source: str

    @property
    def payload(self) -> bytes:
        return np.ascontiguousarray(self.pcm, dtype="<i2").tobytes()


@dataclass(frozen=True)
class FakeImage:
    label: str
    payload: bytes
    source: str


def test_device_ids_are_zero_padded_keys() -> None:
    assert device_ids(3, "mic-") == ["mic-0001", "mic-0002", "mic-0003"]
    assert device_ids(12, "cam-")[-1] == "cam-0012"


def test_fleet_keys_carry_the_pipelines_device_prefix() -> None:
    assert Fleet(load_settings("acoustic"), 2, 1.0, clips=_clips(1)).devices == ["mic-0001", "mic-0002"]
    vision = load_settings("vision")
    image = FakeImage("bag", png.encode(np.zeros((28, 28), np.uint8)), "zeros")
    assert Fleet(vision, 1, 1.0, clips=[image]).devices == ["cam-0001"]


def test_schedule_is_absolute_and_staggered() -> None:
    sends = list(schedule(4, 2.0, duration_s=1.0))
    # 4 devices × 2 frames/s × 1 s; each device's k-th frame at k/2 + d/8 seconds.
    assert len(sends) == 8
    assert [s.at_s for s in sends] == pytest.approx([0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875])
    assert [(s.device, s.seq) for s in sends[:5]] == [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1)]


def test_schedule_has_no_drift_over_many_periods() -> None:
    sends = list(schedule(3, 7.0, duration_s=1000.0))
    assert len(sends) == 3 * 7000
    last_of_device_0 = [s for s in sends if s.device == 0][-1]
    # The 7000th frame is planned at exactly 6999/7 s: times are computed, not accumulated.
    assert last_of_device_0.at_s == 6999 / 7.0
    assert all(a.at_s <= b.at_s for a, b in itertools.pairwise(sends))


def test_schedule_bounded_by_frames_or_duration_whichever_first() -> None:
    assert len(list(schedule(2, 1.0, frames=5))) == 5
    assert len(list(schedule(2, 1.0, frames=100, duration_s=2.0))) == 4
    with pytest.raises(ValueError):
        list(schedule(2, 1.0))
    with pytest.raises(ValueError):
        list(schedule(0, 1.0, frames=1))
    with pytest.raises(ValueError):
        list(schedule(1, 0.0, frames=1))


def test_frame_headers_follow_the_contract() -> None:
    ct = "audio/pcm;format=s16le;rate=16000;channels=1"
    hd = h.as_dict(frame_headers("abc", 1_700_000_000_000, ct, 1_700_000_000_250))
    assert hd == {
        h.ID: "abc",
        h.CAPTURED_MS: "1700000000000",
        h.CONTENT_TYPE: ct,
        h.DEADLINE_MS: "1700000000250",
    }
    assert h.DEADLINE_MS not in h.as_dict(frame_headers("abc", 1, ct, None))


def _clips(n: int) -> list[FakeClip]:
    return [FakeClip(f"label{i}", np.full(16000, i, dtype=np.int16), f"clip{i}") for i in range(n)]


def test_fleet_clip_order_is_fixed_by_the_seed() -> None:
    settings = load_settings("acoustic")
    a = Fleet(settings, 2, 1.0, seed=3, clips=_clips(10))
    b = Fleet(settings, 2, 1.0, seed=3, clips=_clips(10))
    c = Fleet(settings, 2, 1.0, seed=4, clips=_clips(10))
    assert [x.label for x in a._clips] == [x.label for x in b._clips]
    assert [x.label for x in a._clips] != [x.label for x in c._clips]
    assert sorted(x.label for x in a._clips) == sorted(f"label{i}" for i in range(10))


def test_fleet_payload_is_s16le_of_the_declared_length() -> None:
    settings = load_settings("acoustic")
    fleet = Fleet(settings, 1, 1.0, clips=_clips(2))
    assert all(len(p) == 32000 for p in fleet._payloads)
    assert np.frombuffer(fleet._payloads[0], dtype="<i2")[0] in (0, 1)
    with pytest.raises(ConfigError, match=r"would go to acoustic\.dlq: frame has 200 bytes"):
        Fleet(settings, 1, 1.0, clips=[FakeClip("x", np.zeros(100, dtype=np.int16), "short")])


def test_fleet_refuses_images_the_vision_pipeline_would_dead_letter() -> None:
    settings = load_settings("vision")
    good = FakeImage("bag", png.encode(np.zeros((28, 28), np.uint8)), "ok")
    assert Fleet(settings, 1, 1.0, clips=[good])._payloads == [good.payload]
    rgb = FakeImage("bag", png.encode(np.zeros((28, 28, 3), np.uint8)), "colour")
    with pytest.raises(ConfigError, match=r"would go to vision\.dlq: image has 3 channels"):
        Fleet(settings, 1, 1.0, clips=[rgb])


def test_fleet_producer_is_idempotent_with_acks_all() -> None:
    conf = Fleet(load_settings("acoustic"), 1, 1.0, clips=_clips(1)).producer_config()
    assert conf["enable.idempotence"] == "true"
    assert conf["acks"] == "all"


def test_report_writes_labels_as_json_lines(tmp_path: Path) -> None:
    report = SendReport("acoustic.raw", 1, 1.0)
    report.frames["id-1"] = SentFrame("id-1", "mic-0001", "seven", 123, "7.wav")
    out = tmp_path / "labels.jsonl"
    report.write_labels(out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [
        {"id": "id-1", "device": "mic-0001", "label": "seven", "captured_ms": 123, "source": "7.wav"}
    ]
    assert "sent" in report.render()


def test_kcat_example_names_topic_key_and_headers() -> None:
    text = kcat_example(load_settings("acoustic"), "frame.pcm")
    words = shlex.split(text.replace("\\\n", " "))
    assert words[:2] == ["kcat", "-P"]
    assert words[words.index("-t") + 1] == "acoustic.raw"
    assert words[words.index("-k") + 1] == "mic-0001"
    assert "ontime-content-type=audio/pcm;format=s16le;rate=16000;channels=1" in words
    assert words[-1] == "frame.pcm"


def test_kcat_example_for_cameras_sends_a_png() -> None:
    words = shlex.split(kcat_example(load_settings("vision")).replace("\\\n", " "))
    assert words[words.index("-t") + 1] == "vision.raw"
    assert words[words.index("-k") + 1] == "cam-0001"
    assert "ontime-content-type=image/png" in words
    assert words[-1] == frame_file_name("image/png") == "frame.png"


@pytest.mark.parametrize(
    "argv",
    [
        ["devices", "simulate", "--pipeline", "vision"],
        ["--pipeline", "vision", "devices", "simulate"],
        ["--pipeline", "acoustic", "devices", "kcat", "--pipeline", "vision"],
        ["demo", "--pipeline", "vision"],
    ],
)
def test_pipeline_flag_works_before_or_after_the_verb(argv: list[str]) -> None:
    from functools import partial

    from workers.cli.main import build_parser, settings_from_args
    from workers.tools.devices import _settings

    args = build_parser().parse_args(argv)
    args.load_settings = partial(settings_from_args, args)
    assert _settings(args).pipeline.name == "vision"
