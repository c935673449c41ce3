import numpy as np
import pytest

from pipelines.acoustic.streams import SAMPLE_RATE, build_stream, windows


def test_windows_overlap_by_the_hop_and_end_where_stated() -> None:
    pcm = (np.arange(3 * SAMPLE_RATE) % 20_000).astype(np.int16)
    w = windows(pcm, 4000)
    assert w.shape == (9, SAMPLE_RATE)
    assert w[1][0] == 4000 and w[-1][-1] == (3 * SAMPLE_RATE - 1) % 20_000


def test_a_stream_holds_its_keywords_where_the_truth_says() -> None:
    pytest.importorskip("soundfile")
    audio = build_stream("eval", 20, ("six", "two"), seed=1, lead_s=6.0)
    assert len(audio.pcm) == 20 * SAMPLE_RATE
    assert [s.word for s in audio.keywords] == ["six", "two"]
    for s in audio.keywords:
        speech = audio.pcm[s.start_ms * 16 : s.end_ms * 16].astype(np.float64)
        before = audio.pcm[(s.start_ms - 1000) * 16 : (s.start_ms - 500) * 16].astype(np.float64)
        assert np.sqrt(np.mean(speech**2)) > 10 * np.sqrt(np.mean(before**2))  # speech is there
    assert audio.keywords[0].start_ms >= 6000
    again = build_stream("eval", 20, ("six", "two"), seed=1, lead_s=6.0)
    assert np.array_equal(again.pcm, audio.pcm) and again.spoken == audio.spoken
    # eval and tune never share a recording
    tune = build_stream("tune", 20, 3, seed=1)
    assert not {s.source for s in tune.spoken} & {s.source for s in audio.spoken}
