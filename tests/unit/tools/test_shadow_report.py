"""The shadow's comparison of two versions' logits and its agreement report per window and label."""

from __future__ import annotations

import numpy as np

from workers.tools.shadow import compare
from workers.tools.shadow_report import by_label, by_window, render


def test_compare_names_each_versions_top_label_and_the_candidates_view_of_the_serving_one() -> None:
    serving = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], dtype=np.float32)
    candidate = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    (a, b) = compare(["x", "y", "z"], serving, candidate)
    assert (a[0], a[2]) == ("x", "x") and abs(a[4] - a[1]) < 1e-9  # same logits: delta 0
    assert (b[0], b[2]) == ("y", "z") and b[4] < b[1]  # the candidate moved off the serving answer


def _row(at_ms: int, label: str, agree: bool, delta: float) -> dict[str, object]:
    return {"at_ms": at_ms, "label": label, "agree": agree, "score_delta": delta, "serving_ms": 1.0,
            "candidate_ms": 0.5, "serving_model": "m:1.0.0", "candidate_model": "m:2.0.0"}  # fmt: skip


def test_agreement_per_window_and_per_label() -> None:
    rows = [_row(0, "yes", True, 0.0), _row(1_000, "no", False, -0.2), _row(61_000, "yes", True, 0.1)]
    windows = by_window(rows, 60.0)
    assert [(w.frames, w.agree) for w in windows] == [(2, 0.5), (1, 1.0)]
    labels = {a.key: a for a in by_label(rows)}
    assert (labels["no"].agree, labels["yes"].frames) == (0.0, 2)
    text = render(rows, 60.0)
    assert "3 frames, top-1 agreement 66.7%" in text and "m:1.0.0  vs  candidate m:2.0.0" in text
