"""The hostile-input battery: every kind of malformed input a device (or a spoofing client) can send.

One table, `cases(inputs)`: each `Case` says what is produced (topic, headers, payload, how) and
what must become of it — `dlq:<reason>`, `late:<reason>`, or `result` (optionally with a check
of the answer, for inputs whose bad part the pipeline drops by rule). test_battery.py sends them
all, each followed by a good frame on the same partition, through one pipeline run.
`python -m tests.integration.battery` prints the table.

Header names given as bytes cannot be produced by confluent-kafka (a str with surrogates
crashes its produce() in C; bytes names are str()-ed): those records go out through `kcat`.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from schemas.results import Result
from workers.messages import headers as h

PCM = "audio/pcm;format=s16le;rate=16000;channels=1"
F32 = "audio/pcm;format=f32le;rate=16000;channels=1"
TENSOR = "application/x-ontime-tensor"
Topic = Literal["raw", "features", "scores"]
Check = Callable[[Result], str | None]
HeaderName = str | bytes


@dataclass(frozen=True)
class Inputs:
    """Real data the cases are made of: a PCM frame, its features and its logits."""

    pcm: bytes  # s16le, 1 s
    features: np.ndarray  # float32 (1, 40, 101), from the served features model
    logits: np.ndarray  # float32 (1, 17), from the served classifier


@dataclass(frozen=True)
class Case:
    name: str
    topic: Topic
    payload: bytes | None
    headers: list[tuple[HeaderName, bytes]]
    expect: str  # "dlq:<reason>", "late:<reason>" or "result"
    check: Check | None = None
    compression: str | None = None
    copies: int = 1  # records in one (compressed) producer batch
    id_header: bool = True  # False: the case's headers decide the id (or none is given)
    why: str = ""
    # The DLQ copy would be over the producer's limit: dead-lettered by reference, without payload.
    by_reference: bool = False

    @property
    def via_kcat(self) -> bool:
        return any(isinstance(k, bytes) for k, _ in self.headers)


def tensor_type(dtype: str, shape: str) -> bytes:
    return f"{TENSOR};dtype={dtype};shape={shape}".encode()


def _ct(text: str | bytes) -> tuple[str, bytes]:
    return (h.CONTENT_TYPE, text if isinstance(text, bytes) else text.encode())


def _ms(offset_ms: float) -> bytes:
    return str(int(time.time() * 1000 + offset_ms)).encode()


def _stages_are_ours(r: Result) -> str | None:
    names = [s.stage for s in r.stages]
    if names != ["preprocess", "infer", "postprocess"]:
        return f"stages {names}"
    if any(s.queue_ms > 60_000 or s.compute_ms > 60_000 for s in r.stages):
        return f"spoofed timings survived: {r.stages}"
    return None


def _status_ok(r: Result) -> str | None:
    return None if r.status == "ok" else f"status {r.status}"


def _real_model(r: Result) -> str | None:
    return None if r.model.name != "evil" and r.model.sha256 != "0" * 64 else f"model {r.model}"


def _no_captured(r: Result) -> str | None:
    return None if r.captured_ms is None else f"captured_ms {r.captured_ms}"


def _deadline_clamped(r: Result) -> str | None:
    # The battery's budget is 60 s: a clamped deadline lies within minutes of now, not a year.
    return None if r.deadline_ms < time.time() * 1000 + 600_000 else f"deadline {r.deadline_ms} kept"


def _id_is(expected: str) -> Check:
    return lambda r: None if r.id == expected else f"id {r.id!r}, expected {expected!r}"


def _preprocess_kept(r: Result) -> str | None:
    names = [s.stage for s in r.stages]
    first = r.stages[0] if r.stages else None
    if names != ["preprocess", "infer", "postprocess"] or first is None or first.queue_ms != 1.5:
        return f"stages {r.stages}"
    return None


def cases(x: Inputs) -> list[Case]:
    """Every kind of hostile input, with what must become of it."""
    pcm, feats, logits = x.pcm, x.features, x.logits
    ok_feats = tensor_type("float32", "1x40x101")
    ok_logits = tensor_type("float32", "1x17")
    f32 = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    nan_f32, inf_f32, loud_f32 = f32.copy(), f32.copy(), f32.copy()
    nan_f32[10], inf_f32[20], loud_f32[30] = np.nan, np.inf, 2.0
    nan_feats, inf_feats = feats.copy(), feats.copy()
    nan_feats[0, 3, 4], inf_feats[0, 5, 6] = np.nan, -np.inf
    nan_logits = logits.copy()
    nan_logits[0, 2] = np.nan
    bomb = bytes(300_000)  # compresses ~1000:1; ~10× a frame once inflated, 3 to a batch
    past = _ms(-10_000)
    return [
        # -- header names and values that are not UTF-8 -------------------------------------
        Case("name-not-utf8", "raw", pcm, [(b"\xff\xfe-x", b"1"), _ct(PCM)], "dlq:bad-header"),
        Case("name-not-utf8-only-unknown", "raw", pcm, [_ct(PCM), (b"x-\xc3\x28", b"v")], "dlq:bad-header"),
        Case(
            "name-not-utf8-features",
            "features",
            feats.tobytes(),
            [(b"\x80", b"1"), _ct(ok_feats)],
            "dlq:bad-header",
            why="infer waits for company: record_deadline reads the headers",
        ),
        Case("id-not-utf8", "raw", pcm, [(h.ID, b"\xff\xfeid"), _ct(PCM)], "dlq:bad-header", id_header=False),
        Case("content-type-not-utf8", "raw", pcm, [_ct(b"audio/pcm\xff;format=s16le")], "dlq:bad-header"),
        Case("deadline-not-utf8", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, b"\xff17")], "dlq:bad-header"),
        Case("captured-not-utf8", "raw", pcm, [_ct(PCM), (h.CAPTURED_MS, b"\xc3")], "dlq:bad-header"),
        Case(
            "unknown-header-not-utf8",
            "raw",
            pcm,
            [_ct(PCM), (b"x-note", b"\xff\xff")],
            "result",
            why="headers the pipeline does not read are never decoded",
        ),
        # -- duplicates: the last one wins -------------------------------------------------
        Case(
            "duplicate-content-type-last-bad",
            "raw",
            pcm,
            [_ct(PCM), _ct("image/png")],
            "dlq:bad-content-type",
        ),
        Case("duplicate-content-type-last-good", "raw", pcm, [_ct("image/png"), _ct(PCM)], "result"),
        Case(
            "duplicate-id",
            "raw",
            pcm,
            [(h.ID, b"dup-first"), _ct(PCM), (h.ID, b"dup-last")],
            "result",
            check=_id_is("dup-last"),
            id_header=False,
        ),
        # -- huge headers ------------------------------------------------------------------
        Case("huge-id", "raw", pcm, [(h.ID, b"i" * 100_000), _ct(PCM)], "dlq:bad-header", id_header=False),
        Case(
            "id-with-control-chars",
            "raw",
            pcm,
            [(h.ID, b"a\nb\x00c"), _ct(PCM)],
            "dlq:bad-header",
            id_header=False,
        ),
        Case("huge-content-type", "raw", pcm, [_ct(PCM + ";x=" + "y" * 50_000)], "dlq:bad-content-type"),
        Case(
            "huge-stage-ms-spoofed",
            "raw",
            pcm,
            [_ct(PCM), (h.STAGE_MS, b"infer=1/1," * 20_000)],
            "result",
            check=_stages_are_ours,
        ),
        Case(
            "huge-stage-ms-features",
            "features",
            feats.tobytes(),
            [_ct(ok_feats), (h.STAGE_MS, b"preprocess=1.5/2.5," + b"a=1/1," * 30_000)],
            "result",
            check=lambda r: None if len(r.stages) == 2 else f"stages {r.stages}",
        ),
        Case("huge-unknown-header", "raw", pcm, [_ct(PCM), ("x-blob", b"z" * 200_000)], "result"),
        Case("thousand-headers", "raw", pcm, [_ct(PCM), *[(f"x-{i}", b"v") for i in range(1000)]], "result"),
        # -- NaN / Inf / absurd numbers in headers -------------------------------------------
        Case(
            "stage-ms-nan-inf-features",
            "features",
            feats.tobytes(),
            [_ct(ok_feats), (h.STAGE_MS, b"preprocess=1.5/2.5,infer=nan/1,postprocess=1/inf")],
            "result",
            check=_preprocess_kept,
            why="a trusted topic: only sane pairs of known stages are kept",
        ),
        Case(
            "stage-ms-nan-spoofed",
            "raw",
            pcm,
            [_ct(PCM), (h.STAGE_MS, b"preprocess=nan/nan")],
            "result",
            check=_stages_are_ours,
        ),
        Case(
            "stage-ms-absurd-features",
            "features",
            feats.tobytes(),
            [_ct(ok_feats), (h.STAGE_MS, b"preprocess=1e308/-5,bogus=1/1")],
            "result",
            check=lambda r: (
                None if [s.stage for s in r.stages] == ["infer", "postprocess"] else str(r.stages)
            ),
        ),
        Case("deadline-nan", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, b"NaN")], "dlq:bad-header"),
        Case("deadline-inf", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, b"inf")], "dlq:bad-header"),
        Case("deadline-negative", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, b"-5")], "dlq:bad-header"),
        Case("deadline-zero", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, b"0")], "dlq:bad-header"),
        Case("deadline-float", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, b"1.7e12")], "dlq:bad-header"),
        Case("deadline-huge", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, b"9" * 400)], "dlq:bad-header"),
        Case(
            "deadline-far-future",
            "raw",
            pcm,
            [_ct(PCM), (h.DEADLINE_MS, _ms(365 * 86_400_000))],
            "result",
            check=_deadline_clamped,
        ),
        Case("deadline-passed", "raw", pcm, [_ct(PCM), (h.DEADLINE_MS, past)], "late:expired"),
        Case("captured-nan", "raw", pcm, [_ct(PCM), (h.CAPTURED_MS, b"nan")], "result", check=_no_captured),
        # -- spoofed internal headers on the device topic: dropped ----------------------------
        Case("spoof-status", "raw", pcm, [_ct(PCM), (h.STATUS, b"degraded")], "result", check=_status_ok),
        Case(
            "spoof-status-garbage", "raw", pcm, [_ct(PCM), (h.STATUS, b"pwned")], "result", check=_status_ok
        ),
        Case(
            "spoof-model",
            "raw",
            pcm,
            [_ct(PCM), (h.MODEL, b"evil:1:" + b"0" * 64)],
            "result",
            check=_real_model,
        ),
        Case(
            "spoof-error-and-source",
            "raw",
            pcm,
            [
                _ct(PCM),
                (h.ERROR_REASON, b"ok"),
                (h.ERROR_STAGE, b"x"),
                (h.SOURCE_OFFSET, b"-1"),
                (h.LATE_COUNT, b"1000000"),
            ],
            "result",
        ),
        Case(
            "model-garbage-scores",
            "scores",
            logits.tobytes(),
            [_ct(ok_logits), (h.MODEL, b"x")],
            "dlq:bad-header",
            why="an internal topic: a malformed internal header is poison",
        ),
        Case(
            "status-garbage-scores",
            "scores",
            logits.tobytes(),
            [_ct(ok_logits), (h.STATUS, b"x")],
            "dlq:bad-header",
        ),
        # -- content types ------------------------------------------------------------------
        Case("no-content-type", "raw", pcm, [], "dlq:bad-content-type"),
        Case("empty-content-type", "raw", pcm, [_ct("")], "dlq:bad-content-type"),
        Case("content-type-garbage", "raw", pcm, [_ct(";;;")], "dlq:bad-content-type"),
        Case(
            "json-body", "raw", b'{"samples": [0, 1, 2]}', [_ct("application/json")], "dlq:bad-content-type"
        ),
        Case("json-body-as-pcm", "raw", b'{"samples": [0, 1, 2]}', [_ct(PCM)], "dlq:bad-shape"),
        Case("pickle", "raw", pickle.dumps(f32), [_ct("application/python-pickle")], "dlq:bad-content-type"),
        Case("png", "raw", b"\x89PNG\r\n\x1a\n" + bytes(100), [_ct("image/png")], "dlq:bad-content-type"),
        Case(
            "wrong-rate",
            "raw",
            pcm,
            [_ct("audio/pcm;format=s16le;rate=8000;channels=1")],
            "dlq:bad-content-type",
        ),
        Case(
            "stereo",
            "raw",
            pcm,
            [_ct("audio/pcm;format=s16le;rate=16000;channels=2")],
            "dlq:bad-content-type",
        ),
        Case(
            "format-s24le",
            "raw",
            pcm,
            [_ct("audio/pcm;format=s24le;rate=16000;channels=1")],
            "dlq:bad-content-type",
        ),
        Case("tensor-on-raw", "raw", feats.tobytes(), [_ct(ok_feats)], "dlq:bad-content-type"),
        # -- payloads -----------------------------------------------------------------------
        Case("empty", "raw", b"", [_ct(PCM)], "dlq:bad-shape"),
        Case("null-payload", "raw", None, [_ct(PCM)], "dlq:bad-shape"),
        Case("truncated", "raw", pcm[:-1], [_ct(PCM)], "dlq:bad-shape"),
        Case("one-byte-over", "raw", pcm + b"\x00", [_ct(PCM)], "dlq:bad-shape"),
        Case("half-frame", "raw", pcm[: len(pcm) // 2], [_ct(PCM)], "dlq:bad-shape"),
        Case("f32-nan", "raw", nan_f32.astype("<f4").tobytes(), [_ct(F32)], "dlq:bad-samples"),
        Case("f32-inf", "raw", inf_f32.astype("<f4").tobytes(), [_ct(F32)], "dlq:bad-samples"),
        Case("f32-out-of-range", "raw", loud_f32.astype("<f4").tobytes(), [_ct(F32)], "dlq:bad-samples"),
        Case(
            "oversized-1mb",
            "raw",
            bytes(1_040_000),
            [_ct(PCM)],
            "dlq:bad-shape",
            by_reference=True,
            why="the broker takes it; its DLQ copy is over the worker producer's message.max.bytes",
        ),
        Case("zip-bomb-gzip", "raw", bomb, [_ct(PCM)], "dlq:bad-shape", compression="gzip", copies=3),
        Case("zip-bomb-zstd", "raw", bomb, [_ct(PCM)], "dlq:bad-shape", compression="zstd", copies=3),
        # -- tensors a spoofing client writes between stages -----------------------------------
        Case(
            "int16-among-float32",
            "features",
            feats.astype("<i2").tobytes(),
            [_ct(tensor_type("int16", "1x40x101"))],
            "dlq:bad-dtype",
        ),
        Case(
            "float64-among-float32",
            "features",
            feats.astype("<f8").tobytes(),
            [_ct(tensor_type("float64", "1x40x101"))],
            "dlq:bad-dtype",
        ),
        Case(
            "int64-logits",
            "scores",
            logits.astype("<i8").tobytes(),
            [_ct(tensor_type("int64", "1x17"))],
            "dlq:bad-dtype",
        ),
        Case("shape-lie-short", "features", feats[:, :, :50].tobytes(), [_ct(ok_feats)], "dlq:bad-shape"),
        Case(
            "shape-lie-model",
            "features",
            feats[:, :, :50].tobytes(),
            [_ct(tensor_type("float32", "1x40x50"))],
            "dlq:bad-shape",
        ),
        Case(
            "huge-shape",
            "features",
            feats.tobytes(),
            [_ct(tensor_type("float32", "1x100000x100000"))],
            "dlq:bad-shape",
        ),
        Case(
            "batch-of-two",
            "features",
            np.concatenate([feats, feats]).tobytes(),
            [_ct(tensor_type("float32", "2x40x101"))],
            "dlq:bad-shape",
        ),
        Case("zero-dims", "features", b"", [_ct(tensor_type("float32", "0x40x101"))], "dlq:bad-shape"),
        Case(
            "nine-dims",
            "features",
            feats.tobytes(),
            [_ct(tensor_type("float32", "1x" * 8 + "4040"))],
            "dlq:bad-content-type",
        ),
        Case(
            "shape-garbage",
            "features",
            feats.tobytes(),
            [_ct(tensor_type("float32", "1x40x"))],
            "dlq:bad-content-type",
        ),
        Case(
            "dtype-complex",
            "features",
            feats.tobytes(),
            [_ct(tensor_type("complex64", "1x40x101"))],
            "dlq:bad-content-type",
        ),
        Case("tensor-nan", "features", nan_feats.tobytes(), [_ct(ok_feats)], "dlq:bad-samples"),
        Case("tensor-inf", "features", inf_feats.tobytes(), [_ct(ok_feats)], "dlq:bad-samples"),
        Case("logits-nan", "scores", nan_logits.tobytes(), [_ct(ok_logits)], "dlq:bad-samples"),
        Case(
            "pickle-features",
            "features",
            pickle.dumps(feats),
            [_ct("application/python-pickle")],
            "dlq:bad-content-type",
        ),
        # -- validated before shedding: expired AND malformed is poison, not late ------------------
        Case(
            "json-body-expired",
            "raw",
            b"{}",
            [_ct("application/json"), (h.DEADLINE_MS, past)],
            "dlq:bad-content-type",
        ),
        Case("truncated-expired", "raw", pcm[:1000], [_ct(PCM), (h.DEADLINE_MS, past)], "dlq:bad-shape"),
        Case(
            "huge-shape-expired",
            "features",
            b"",
            [_ct(tensor_type("float32", "1x100000x100000")), (h.DEADLINE_MS, past)],
            "dlq:bad-shape",
        ),
        # -- ids -----------------------------------------------------------------------------
        Case(
            "no-id",
            "raw",
            pcm,
            [_ct(PCM)],
            "result",
            id_header=False,
            why="the id is uuid5 of (topic, partition, offset): test_battery checks it",
        ),
        Case("empty-id", "raw", pcm, [(h.ID, b""), _ct(PCM)], "result", id_header=False),
        Case("traceparent-garbage", "raw", pcm, [_ct(PCM), (h.TRACEPARENT, b"00-zz-1")], "result"),
    ]


def _inputs_for_listing() -> Inputs:
    return Inputs(bytes(32000), np.zeros((1, 40, 101), np.float32), np.zeros((1, 17), np.float32))


if __name__ == "__main__":
    table = cases(_inputs_for_listing())
    width = max(len(c.name) for c in table)
    for c in table:
        print(f"{c.name:<{width}}  {c.topic:<8}  {c.expect}")
    bad = sum(1 for c in table if c.expect.startswith("dlq:"))
    print(
        f"{len(table)} kinds: {bad} dead-lettered, {sum(1 for c in table if c.expect == 'result')} answered,"
        f" {sum(1 for c in table if c.expect.startswith('late:'))} late"
    )
