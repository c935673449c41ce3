"""Real non-keyword speech splits: disjoint speakers for evaluation, honest `_unknown_` labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.acoustic import recordings


def _files(clips: list[recordings.Clip]) -> set[str]:
    return {c.source.split("#")[0] for c in clips}


def test_speech_eval_is_a_speaker_nothing_trains_or_calibrates_on() -> None:
    evaluated = recordings.speech_files("eval")
    tuned = recordings.speech_files("train") + recordings.speech_files("calib")
    assert len(evaluated) >= 400 and len(tuned) >= 800
    assert all(set(p.parts) & set(recordings.SPEECH_EVAL_DIRS) for p in evaluated)
    speakers = {part for p in tuned for part in p.parts if part in recordings.SPEECH_TRAIN_DIRS}
    assert speakers == set(recordings.SPEECH_TRAIN_DIRS)
    assert not {part for p in tuned for part in p.parts} & set(recordings.SPEECH_EVAL_DIRS)
    assert not set(recordings.speech_files("train")) & set(recordings.speech_files("calib"))


def test_number_words_tones_and_silence_are_left_out() -> None:
    for split in ("eval", "train", "calib"):
        for path in recordings.speech_files(split):
            rel = str(path)
            assert "/digits/" not in rel and "/silence/" not in rel and "beep" not in rel, rel


def test_speech_clips_are_one_second_int16_unknown_with_sound() -> None:
    clips = recordings.real_clips("speech_eval")
    assert len(clips) == len(_files(clips))  # one window per file: independent clips
    for clip in clips[::25]:
        assert clip.label == recordings.UNKNOWN
        assert clip.pcm.dtype == np.int16 and clip.pcm.shape == (16_000,)
        assert np.abs(clip.pcm).max() > 100, clip.source


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(recordings, "ASTERISK_SOUNDS", tmp_path)
    with pytest.raises(recordings.RecordingsMissing, match="asterisk-core-sounds-fr-wav"):
        recordings.speech_files("eval")


def test_unknown_speech_split_fails_clearly() -> None:
    with pytest.raises(ValueError, match="speech split"):
        recordings.speech_files("test")
