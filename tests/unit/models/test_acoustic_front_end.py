"""The served log-mel graph: same numbers as the STFT reference on real recordings, cheaper form.

`acoustic/features` (GEMM against a windowed DFT basis) replaced `acoustic/features-stft` (opset-17
STFT) in the preprocess stage; the classifiers were trained on the reference's output. These tests
hold the replacement to its card: within tolerance of the reference on real frames, the same
answers from the served classifier, and a file the toolchain rebuilds byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models import MODELS_DIR
from pipelines.acoustic import recordings
from pipelines.acoustic.logmel import LogMel, mel_weights
from schemas.card import ModelCard, sha256_of
from workers.config.settings import load_settings

ACOUSTIC = MODELS_DIR / "acoustic"
SERVED, REFERENCE = "features", "features-stft"


def session(variant: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        str(ACOUSTIC / variant / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )


def tolerance() -> float:
    extra = ModelCard.load(ACOUSTIC / SERVED).model_extra or {}
    value = extra["tolerance"]["tolerance_max_abs"]
    assert isinstance(value, float) and 0 < value <= 0.01
    return value


@pytest.fixture(scope="module")
def real_pcm() -> np.ndarray:
    """Real recordings: the eval split, the real negatives, and each keyword under real noise."""
    try:
        clips = recordings.real_clips("eval") + recordings.real_clips("background_train")
    except recordings.RecordingsMissing as exc:
        pytest.skip(str(exc))
    pcm = np.stack([c.pcm.astype(np.float32) / 32768.0 for c in clips])
    rng = np.random.default_rng(0)
    keywords = pcm[: len(recordings.real_clips("keywords"))]
    noise = pcm[-len(keywords) :][rng.permutation(len(keywords))]
    return np.concatenate([pcm, np.clip(keywords + 0.3 * noise, -1, 1)])


def log_mel(variant: str, pcm: np.ndarray) -> np.ndarray:
    return np.asarray(session(variant).run(["features"], {"pcm": pcm})[0])


def test_the_preprocess_stage_serves_the_gemm_graph() -> None:
    onnx = pytest.importorskip("onnx")
    assert load_settings("acoustic").pipeline.stages["preprocess"].model == f"acoustic/{SERVED}"
    ops = {n.op_type for n in onnx.load(str(ACOUSTIC / SERVED / "model.onnx")).graph.node}
    assert "MatMul" in ops and "STFT" not in ops
    card = ModelCard.load(ACOUSTIC / SERVED)
    assert card.lineage.parent == f"acoustic/{REFERENCE}"
    assert card.inputs == ModelCard.load(ACOUSTIC / REFERENCE).inputs
    assert card.outputs == ModelCard.load(ACOUSTIC / REFERENCE).outputs


def test_served_graph_matches_the_reference_on_real_frames(real_pcm: np.ndarray) -> None:
    served, reference = log_mel(SERVED, real_pcm), log_mel(REFERENCE, real_pcm)
    assert served.shape == reference.shape == (len(real_pcm), 40, 101)
    assert np.abs(served - reference).max() <= tolerance()
    # the difference is rounding, not a shifted or scaled spectrum: tiny on average
    assert np.abs(served - reference).mean() < tolerance() / 50


def test_both_graphs_are_within_tolerance_of_the_float64_definition(real_pcm: np.ndarray) -> None:
    exact = LogMel(dtype=np.float64)(real_pcm)
    for variant in (SERVED, REFERENCE):
        assert np.abs(log_mel(variant, real_pcm) - exact).max() <= tolerance(), variant
    assert np.abs(LogMel()(real_pcm) - exact).max() <= tolerance()


def test_silence_and_full_scale_stay_exact_and_finite() -> None:
    pcm = np.zeros((3, 16_000), np.float32)
    pcm[1] = 1.0  # DC at full scale: all energy in bin 0, which no mel band weights
    pcm[2, ::2], pcm[2, 1::2] = 1.0, -1.0  # Nyquist at full scale: bin 256, also unweighted
    served, reference = log_mel(SERVED, pcm), log_mel(REFERENCE, pcm)
    assert np.isfinite(served).all()
    assert np.array_equal(served[0], np.full((40, 101), np.log(np.float32(1e-6))))
    assert not mel_weights()[0].any() and not mel_weights()[256].any()
    # at the edges the window leaks a little into weighted bins: compare where there is energy
    loud = reference > np.log(1e-3)
    assert np.abs(served - reference)[loud].max() <= tolerance()


def served_classifiers() -> list[str]:
    """The infer stage's model and its fallback, from the pipeline YAML."""
    infer = load_settings("acoustic").pipeline.stages["infer"]
    refs = (infer.model, infer.fallback)
    return [ref.removeprefix("acoustic/").partition("@")[0] for ref in refs if ref]  # top level: 1.0.0


@pytest.mark.parametrize("classifier", served_classifiers())
def test_served_classifiers_answer_the_same_through_either_front_end(
    classifier: str, real_pcm: np.ndarray
) -> None:
    model = session(classifier)
    answers = {
        variant: model.run(["logits"], {"features": log_mel(variant, real_pcm)})[0].argmax(1)
        for variant in (SERVED, REFERENCE)
    }
    disagree = int((answers[SERVED] != answers[REFERENCE]).sum())
    assert disagree <= max(1, len(real_pcm) // 100), f"{disagree} of {len(real_pcm)} answers changed"


def test_card_records_tolerance_speed_and_accuracy_measured_in_one_run() -> None:
    card = ModelCard.load(ACOUSTIC / SERVED)
    extra = card.model_extra or {}
    measured = extra["tolerance"]
    assert measured["vs_reference"]["max_abs"] <= measured["tolerance_max_abs"]
    assert measured["frames"] >= 500
    assert measured["accuracy_served"].keys() == measured["accuracy_reference"].keys() >= {"real"}
    reference = ModelCard.load(ACOUSTIC / REFERENCE)
    assert [s.batch for s in card.latency] == [s.batch for s in reference.latency]
    assert set(extra["p50_ratio_vs_reference"]) == {f"batch {s.batch}" for s in card.latency}


@pytest.mark.parametrize("variant", [SERVED, REFERENCE])
def test_toolchain_rebuilds_the_committed_file_byte_for_byte(variant: str, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from models.toolchain.acoustic.frontend import write_graphs

    served, reference = write_graphs(tmp_path)
    built = served if variant == SERVED else reference
    assert (
        sha256_of(built)
        == ModelCard.load(ACOUSTIC / variant).sha256
        == sha256_of(ACOUSTIC / variant / "model.onnx")
    )
