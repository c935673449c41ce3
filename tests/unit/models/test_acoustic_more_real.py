"""The served chain on real speech from packages nothing trains on (evaluation only).

features -> student-int8 -> postprocess in onnxruntime, on 30 digit recordings (spokennumbers and
tuxpaint's number stamps, three voices) and on ~460 English words, letters and exclamations by 10+
speakers (ktuberling-data, hedgewars-data, tuxpaint-stamps-default). The floors are
generous (the measured numbers are in docs/models-acoustic.md) but fail if rejection stops working
(without it 26 % of the English words come back as a keyword) or the classifier stops hearing
digits (a guess gets ~1 in 17). A missing package is a failure that names it, never a skip.
"""

from __future__ import annotations

import numpy as np

from models.toolchain.acoustic.more_real import ENGLISH_WORDS, N_KEYWORDS, Row, measure_clips, pooled, table
from models.toolchain.stats import wilson_interval
from pipelines.acoustic import recordings

SERVED = "student-int8"


def test_served_chain_hears_most_of_the_extra_digit_recordings() -> None:
    clips = recordings.real_clips("keywords_more")
    labels, got = measure_clips(SERVED, clips)
    assert len(clips) == 30
    assert int((got == labels).sum()) >= 15, [recordings.LABELS[g] for g in got]


def test_served_chain_rejects_most_real_english_non_keyword_words() -> None:
    clips = recordings.real_clips("words_en_eval")
    _, got = measure_clips(SERVED, clips)
    false_accepts = float((got < N_KEYWORDS).mean())
    assert len(clips) >= 400
    assert false_accepts <= 0.15, f"{false_accepts:.3f} of {len(clips)} English non-keyword words accepted"
    assert (got == recordings.LABELS.index(recordings.UNKNOWN)).mean() >= 0.6
    assert np.unique(got).size >= 3  # not one constant answer


def test_the_table_pools_counts_not_rates() -> None:
    rows = [
        Row("ktuberling English words", "", "false accepts", wilson_interval(11, 72)),
        Row("hedgewars English lines", "", "false accepts", wilson_interval(13, 302)),
        Row("French prompts", "", "false accepts", wilson_interval(38, 449)),
        Row("spokennumbers digits", "", "keyword accuracy", wilson_interval(7, 10)),
    ]
    english = pooled(rows, "false accepts", ENGLISH_WORDS)
    assert (round(english.value * english.n), english.n) == (24, 374)
    everything = pooled(rows, "false accepts")
    assert (round(everything.value * everything.n), everything.n) == (62, 823)
    text = table("student-int8", rows)
    assert "| **English non-keyword words** | pooled | false accepts | 0.064" in text
    assert "| **all keywords** | pooled | keyword accuracy | 0.700 [0.397, 0.892] | 10 |" in text
