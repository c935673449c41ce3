"""`ontime bench frontend`: the three contenders run on real clips and the table says what it measured.

No wall-clock assertions: only that every contender was timed at every batch size, that the
reference row is the 1.00x baseline, and that each contender computes the same log-mel.
"""

from __future__ import annotations

import io

import pytest

from pipelines.acoustic import recordings
from workers.cli.main import build_parser
from workers.config.settings import load_settings
from workers.tools.bench import frontend


@pytest.fixture(scope="module")
def rivals() -> tuple[list[frontend.Contender], str]:
    pytest.importorskip("threadpoolctl")
    out = io.StringIO()
    try:
        found = frontend.run_bench(load_settings("acoustic"), out, batches=(1, 3), repeats=2, runs=2)
    except Exception as exc:  # ConfigError naming the Debian package when recordings are missing
        if not recordings.ALLISON_DIR.is_dir():
            pytest.skip(str(exc))
        raise
    return found, out.getvalue()


def test_reference_served_and_numpy_are_timed_at_every_batch(
    rivals: tuple[list[frontend.Contender], str],
) -> None:
    found, _ = rivals
    assert [r.name for r in found] == [
        "acoustic/features-stft (reference)",
        "acoustic/features (served)",
        "numpy rfft + mel matmul",
    ]
    for rival in found:
        assert set(rival.ms_per_frame) == {1, 3}
        assert all(ms > 0 for ms in rival.ms_per_frame.values())


def test_every_contender_computes_the_same_log_mel(rivals: tuple[list[frontend.Contender], str]) -> None:
    found, _ = rivals
    assert found[0].max_abs_vs_reference == 0.0
    assert all(r.max_abs_vs_reference < 5e-3 for r in found)


def test_table_has_a_row_per_contender_and_the_reference_is_the_baseline(
    rivals: tuple[list[frontend.Contender], str],
) -> None:
    _, text = rivals
    rows = [line for line in text.splitlines() if line.startswith("| ") and "front end" not in line]
    assert len(rows) == 3
    assert rows[0].count("| 1.00x |") == 2
    assert "batch 1 ms/frame" in text and "batch 3 ratio" in text


def test_cli_registers_bench_frontend() -> None:
    args = build_parser().parse_args(["bench", "frontend", "--batches", "1,16", "--repeats", "3"])
    assert (args.batches, args.repeats, args.reference) == ("1,16", 3, frontend.REFERENCE)
