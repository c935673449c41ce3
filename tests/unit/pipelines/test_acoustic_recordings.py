"""Real non-keyword speech splits: disjoint speakers for evaluation, honest `_unknown_` labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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


@pytest.mark.parametrize("held_out", sorted(recordings.SPEECH_TRAIN_DIRS))
def test_a_held_out_calibration_speaker_is_never_in_the_training_speech(held_out: str) -> None:
    train = recordings.speech_files("train", held_out=held_out)
    calib = recordings.speech_files("calib", held_out=held_out)
    assert calib and train
    assert all(held_out in p.parts for p in calib)
    assert not any(held_out in p.parts for p in train)
    # Together the same prompts as the by-file split: nothing dropped, nothing added.
    by_file = recordings.speech_files("train") + recordings.speech_files("calib")
    assert sorted(train + calib) == sorted(by_file)
    assert recordings.speech_files("eval", held_out=held_out) == recordings.speech_files("eval")


def test_an_unknown_held_out_speaker_fails_clearly() -> None:
    with pytest.raises(ValueError, match="held_out"):
        recordings.speech_files("calib", held_out="fr_CA_f_June")


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


# The evaluation-only sources: never read by training, distillation or threshold calibration, which
# read only these directories (realdata.py: klettres + Allison; speech_train/calib: asterisk).
TRAINED_ON = (recordings.KLETTRES_DIR, recordings.ASTERISK_SOUNDS, recordings.SONIC_PI_DIR)


def _more_files() -> list[Path]:
    keywords = [path for _, path in recordings.more_keyword_files()]
    return keywords + recordings.more_speech_files("en") + recordings.more_speech_files("other")


def test_more_real_speech_is_outside_everything_the_toolchain_trains_or_calibrates_on() -> None:
    files = _more_files()
    assert len(files) >= 2_000
    for path in files:
        assert not any(path.is_relative_to(d) for d in TRAINED_ON), path
    tuned = (
        recordings.unknown_files("train")
        + recordings.speech_files("train")
        + recordings.speech_files("calib")
    )
    assert not set(files) & set(tuned)


def test_more_keywords_are_three_voices_saying_the_ten_digits_each_one_second_with_sound() -> None:
    clips = recordings.real_clips("keywords_more")
    assert [c.label for c in clips] == list(recordings.DIGITS) * 3
    assert len({Path(c.source).parent for c in clips}) == 2  # spokennumbers, tuxpaint (2 voices)
    for clip in clips:
        digit = Path(clip.source).stem.split("_")[0]
        assert digit == str(recordings.DIGITS.index(clip.label))  # each file is named by its digit
        assert clip.pcm.dtype == np.int16 and clip.pcm.shape == (16_000,)
        assert np.abs(clip.pcm).max() > 1000, clip.source


def test_more_speech_has_many_voices_and_leaves_out_keyword_like_lines() -> None:
    english = recordings.more_speech_files("en")
    other = recordings.more_speech_files("other")
    assert len(english) >= 350 and len(other) >= 1_800
    assert not set(english) & set(other)
    # One voice per ktuberling language and per hedgewars pack.
    assert {p.parent.name for p in english} >= {"en", *recordings.HEDGEWARS_ENGLISH}
    assert len({p.parent.name for p in other}) >= 25
    for path in english + other:
        stem = path.stem.lower()
        assert not stem.startswith(("hello", "byebye", "solong", "nooo", "thisone", "ohdear", "uh-oh")), path
        assert "Robot" not in path.parts, path
        assert stem not in set(recordings.DIGITS) | set(recordings.COMMANDS), path
        assert not stem.startswith(("o_", "z_")), path  # letters that sound like a keyword


def test_tuxpaint_descriptions_that_say_a_keyword_are_left_out() -> None:
    descriptions = [p for p in recordings.more_speech_files("en") if p.name.endswith("_desc.ogg")]
    assert len(descriptions) >= 50
    texts = [
        p.with_name(p.name.removesuffix("_desc.ogg") + ".txt").read_text().splitlines()[0]
        for p in descriptions
    ]
    said = {w.strip(".,!?").lower() for t in texts for w in t.split()}
    assert not said & {*recordings.DIGITS, *recordings.COMMANDS, "oh", "to", "too", "for"}
    assert "wildboar_desc.ogg" not in {p.name for p in descriptions}  # "Two wild boars."


def test_more_speech_clips_are_unknown_one_per_file() -> None:
    clips = recordings.real_clips("words_en_eval")
    assert len(clips) == len(_files(clips)) >= 350  # independent clips, none silent
    assert {c.label for c in clips} == {recordings.UNKNOWN}
    assert all(c.pcm.shape == (16_000,) and c.pcm.dtype == np.int16 for c in clips)


@pytest.mark.parametrize(
    ("attribute", "package", "call"),
    [
        ("HEDGEWARS_DIR", "hedgewars-data", lambda: recordings.more_speech_files("en")),
        ("KTUBERLING_DIR", "ktuberling-data", lambda: recordings.more_speech_files("other")),
        ("TUXPAINT_DIR", "tuxpaint-stamps-default", recordings.more_keyword_files),
    ],
)
def test_a_missing_debian_source_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, attribute: str, package: str, call: Callable[[], object]
) -> None:
    monkeypatch.setattr(recordings, attribute, tmp_path / "absent")
    with pytest.raises(recordings.RecordingsMissing, match=package):
        call()


def test_a_missing_pypi_source_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recordings, "SPOKENNUMBERS_PACKAGE", "spokennumbers_not_installed")
    with pytest.raises(recordings.RecordingsMissing, match="spokennumbers_not_installed"):
        recordings.real_clips("keywords_more")
    with pytest.raises(ValueError, match="more speech split"):
        recordings.more_speech_files("fr")


def test_more_keyword_files_carry_a_recording_noise_floor() -> None:
    """Synthesized speech has digital silence (espeak-ng: ~40 % exact zeros); these recordings don't."""
    for _, path in recordings.more_keyword_files():
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
        assert float((data == 0).mean()) < 0.01, path
