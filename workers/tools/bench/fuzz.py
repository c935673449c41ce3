"""`ontime bench fuzz`: coverage-guided fuzzing (atheris/libFuzzer) of every decoder and header parser.

Each entry point takes fuzzer bytes, builds a hostile input from them and calls the code that
reads device input. Only the documented poison types (`PoisonMessage` and its subclasses) may
escape; anything else is a finding, which libFuzzer saves as a crash file. Each target runs in a
child process (libFuzzer exits the process when done) with only `workers.messages` and
`workers.errors` instrumented, and the table shows runs, coverage and findings per target.
tests/unit/messages/test_properties.py states the same properties for hypothesis.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from workers.messages import headers as H  # the dictionary's header names

Target = Callable[[bytes], None]
_RESULT = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")


class _Record:
    """A consumed record built from fuzzer bytes: the methods Envelope.from_record calls."""

    def __init__(self, headers: Any, value: bytes | None, ts: int) -> None:
        self._headers, self._value, self._ts = headers, value, ts

    def headers(self) -> Any:
        if isinstance(self._headers, BaseException):
            raise self._headers
        return self._headers

    def set_headers(self, headers: Any) -> None:
        self._headers = headers

    def key(self) -> bytes | None:
        return b"dev"

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return "fuzz.raw"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 1

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


def targets() -> dict[str, Target]:
    """Entry point name → function of fuzzer bytes (imports happen here, under instrumentation)."""
    import atheris

    from workers.config.settings import load_settings
    from workers.config.spec import STAGE_ORDER
    from workers.errors import PoisonMessage
    from workers.messages import codec
    from workers.messages import headers as h
    from workers.messages.deadline import stamp
    from workers.messages.envelope import Envelope
    from workers.messages.frames import load_decoder
    from workers.messages.reasons import BAD_HEADER

    frame = load_settings("acoustic").pipeline.frame
    decode_pcm = load_decoder(frame)  # the acoustic pipeline's own decoder (pipelines/acoustic/frames.py)
    names = [*h.READ, *h.INTERNAL, h.UNREADABLE, "x-other"]

    def decode_tensor(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        content_type = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)).decode("utf-8", "replace")
        if fdp.ConsumeBool():
            content_type = f"{codec.TENSOR_MIME};{content_type}"
        try:
            array = codec.decode_tensor(fdp.ConsumeBytes(fdp.remaining_bytes()), content_type)
        except PoisonMessage:
            return
        assert array.ndim <= 8

    def decode_frame(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        fmt = fdp.PickValueInList(["s16le", "f32le", "s24le", fdp.ConsumeUnicodeNoSurrogates(8)])
        content_type = f"audio/pcm;format={fmt};rate=16000;channels={fdp.ConsumeIntInRange(0, 2)}"
        body = fdp.ConsumeBytes(fdp.remaining_bytes())
        # Repeat the fuzzer's bytes up to a valid frame length half the time, so values are reached.
        size = fdp.PickValueInList([32000, 64000]) if body and len(body) % 2 else len(body)
        payload = (body * (size // max(1, len(body)) + 1))[:size]
        try:
            samples = decode_pcm(payload, content_type)
        except PoisonMessage:
            return
        assert samples.shape == (frame.params["samples"],)

    def parse_stage_ms(data: bytes) -> None:
        text = data.decode("utf-8", "replace")  # bytes map straight to text: dictionary tokens work
        times = h.parse_stage_ms(text)
        assert len(times) <= len(STAGE_ORDER) and len(h.render_stage_ms(times)) <= h.MAX_STAGE_MS_CHARS
        for t in times:
            assert t.stage in STAGE_ORDER and 0 <= t.queue_ms <= h.MAX_STAGE_MS >= t.compute_ms >= 0, t

    def stamp_deadline(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        ts = fdp.ConsumeIntInRange(-(2**63), 2**63)
        header = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
        stamp(header, ts, 250.0, 50.0, fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else None)

    def envelope(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        headers: Any
        if fdp.ConsumeIntInRange(0, 15) == 0:
            headers = SystemError("header name is not UTF-8")
        else:
            headers = []
            for _ in range(fdp.ConsumeIntInRange(0, 12)):
                name = fdp.PickValueInList(names) if fdp.ConsumeBool() else fdp.ConsumeUnicode(8)
                value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80)) if fdp.ConsumeBool() else None
                headers.append((name, value))
        record = _Record(headers, fdp.ConsumeBytes(16), fdp.ConsumeIntInRange(-5, 2**42))
        env = Envelope.from_record(record, budget_ms=250.0, skew_ms=50.0, taken_ms=1.7e12)
        for _, value in env.error_headers("preprocess", BAD_HEADER, "fuzz"):
            assert isinstance(value, bytes)
        env.distrust()

    def content_type(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            codec.ContentType.parse(text)
        except PoisonMessage:
            return

    return {
        "decode_tensor": decode_tensor,
        "decode_frame": decode_frame,
        "content_type": content_type,
        "parse_stage_ms": parse_stage_ms,
        "stamp": stamp_deadline,
        "envelope": envelope,
    }


# Tokens libFuzzer splices into inputs (-dict): the grammar of content types and headers.
DICTIONARY = (
    *("=", "/", ",", ";", "x", "-", ".", "e", "nan", "inf", "-inf", "1e308", "0", "1", "40", "101"),
    *("preprocess", "infer", "postprocess", "application/x-ontime-tensor", "application/json"),
    *("dtype=", "shape=", "float32", "float64", "int16", "uint8", "1x40x101", "1x17"),
    *("audio/pcm", "format=", "s16le", "f32le", "rate=16000", "channels=1"),
    *(H.ID, H.DEADLINE_MS, H.STAGE_MS, H.MODEL, H.STATUS),
)

TARGETS = ("decode_tensor", "decode_frame", "content_type", "parse_stage_ms", "stamp", "envelope")


@dataclass(frozen=True)
class FuzzRun:
    target: str
    runs: int
    coverage: int
    features: int
    corpus: int
    seconds: float
    findings: int
    note: str = ""


def run_target(target: str, seconds: float, workdir: Path) -> FuzzRun:
    """Fuzz one entry point in a child process for `seconds`; parse libFuzzer's final stats."""
    # Run as a script, not `-m`: importing workers.tools.bench first would load the decoders
    # before atheris can instrument them.
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        target,
        f"-max_total_time={max(1, int(seconds))}",
        f"-artifact_prefix={workdir}/{target}-",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-dict={_dictionary(workdir)}",
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=seconds + 120)
    took = time.monotonic() - started
    stats = _RESULT.findall(proc.stderr)
    runs, cov, ft, corp = (int(x) for x in stats[-1]) if stats else (0, 0, 0, 0)
    crashes = [p for p in workdir.glob(f"{target}-*") if p.is_file()]
    note = ""
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-12:]
        note = f"exit {proc.returncode}: " + " | ".join(tail)
    return FuzzRun(target, runs, cov, ft, corp, took, len(crashes), note)


def _dictionary(workdir: Path) -> Path:
    path = workdir / "ontime.dict"
    path.write_text("".join(f'"{token}"\n' for token in DICTIONARY))
    return path


def render(runs: list[FuzzRun]) -> str:
    head = f"{'target':<16} {'runs':>10} {'cov':>6} {'ft':>6} {'corpus':>7} {'s':>6} {'findings':>9}"
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append(
            f"{r.target:<16} {r.runs:>10} {r.coverage:>6} {r.features:>6} {r.corpus:>7} "
            f"{r.seconds:>6.0f} {r.findings:>9}"
        )
        if r.note:
            lines.append(f"  {r.note[:2000]}")
    return "\n".join(lines)


def run_bench(
    out: TextIO, seconds: float, only: list[str] | None = None, keep: Path | None = None
) -> list[FuzzRun]:
    try:
        import atheris  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"atheris is not installed ({exc}): pip install -e '.[dev]' (Linux)") from None
    chosen = only or list(TARGETS)
    results: list[FuzzRun] = []
    workdir = keep or Path(tempfile.mkdtemp(prefix="ontime-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for target in chosen:
        out.write(f"fuzzing {target} for {seconds:g} s ...\n")
        out.flush()
        results.append(run_target(target, seconds, workdir))
    out.write("\n" + render(results) + "\n")
    if any(r.findings for r in results):
        out.write(f"findings saved under {workdir}\n")
    elif keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def register_cli(subparsers: Any) -> None:
    bench = subparsers.add_parser("fuzz", help="coverage-guided fuzzing of every decoder and header parser")
    bench.add_argument("--seconds", type=float, default=10.0, help="fuzzing time per entry point")
    bench.add_argument(
        "--target", action="append", choices=TARGETS, help="only this entry point (repeatable)"
    )
    bench.add_argument("--keep", type=Path, default=None, help="directory to keep findings in")
    bench.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    results = run_bench(sys.stdout, args.seconds, args.target, args.keep)
    return 1 if any(r.findings or r.note for r in results) else 0


def _fuzz_main(argv: list[str]) -> None:
    """Child process: instrument the hot-path decoders, then hand control to libFuzzer."""
    import atheris

    target = argv[1]
    with atheris.instrument_imports(include=["workers.messages", "workers.errors"]):
        table = targets()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup([argv[0], *argv[2:]], table[target])
    atheris.Fuzz()


if __name__ == "__main__":
    _fuzz_main(sys.argv)
