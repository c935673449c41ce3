"""`ontime bench frontend`: what the log-mel front end costs per frame, old graph vs new vs numpy.

In one process, on real recordings, interleaved: the reference STFT graph (`acoustic/features-stft`),
the graph the preprocess stage serves (its `model` in the pipeline YAML), and numpy's rfft + mel
matmul (`pipelines/acoustic/logmel.py`). The graphs are opened exactly as the stage opens them
(`OnnxModel`: sha256 checked, ORT_ENABLE_ALL, the stage's intra-op threads). Each repeat times
every contender for `runs` calls in turn, so a noisy neighbour slows them all alike; the table shows
the median over all timed calls of milliseconds per frame (a call that was preempted is an outlier,
not a shift) and its ratio to the reference. Before timing,
the outputs are compared with the reference's (max abs difference in log-mel). numpy's BLAS is
pinned to the stage's thread count too (threadpoolctl), so every contender gets the same cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from workers.config.settings import OntimeSettings
from workers.config.spec import PipelineSpec
from workers.messages.frames import load_decoder
from workers.stages.model import OnnxModel
from workers.tools.devices import load_clips

REFERENCE = "acoustic/features-stft"
DEFAULT_BATCHES = (1, 16)
Run = Callable[[npt.NDArray[np.float32]], npt.NDArray[Any]]


@dataclass
class Contender:
    """One way to compute the front end, and what it measured."""

    name: str
    run: Run
    max_abs_vs_reference: float = 0.0
    ms_per_frame: dict[int, float] = field(default_factory=dict)


def _graph(model: OnnxModel) -> Run:
    def run(pcm: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        return model.run({model.input_names[0]: pcm})[model.output_names[0]]

    return run


def contenders(settings: OntimeSettings, reference: str = REFERENCE) -> list[Contender]:
    """Reference graph, served graph, numpy: the reference first (ratios are against it)."""
    from pipelines.acoustic.logmel import LogMel

    spec = settings.pipeline.stages["preprocess"]
    root = settings.models_dir
    out = [
        Contender(f"{reference} (reference)", _graph(OnnxModel(reference, spec.threads, root))),
        Contender(f"{spec.model} (served)", _graph(OnnxModel(spec.model, spec.threads, root))),
        Contender("numpy rfft + mel matmul", LogMel()),
    ]
    return out


def real_pcm(pipeline: PipelineSpec) -> npt.NDArray[np.float32]:
    """The pipeline's real labelled recordings, as its frame decoder gives them: float32 [N,16000]."""
    decode = load_decoder(pipeline.frame)
    return np.stack([decode(c.payload, pipeline.frame.content_type) for c in load_clips(pipeline)])


def measure(
    rivals: Sequence[Contender],
    pcm: npt.NDArray[np.float32],
    batches: Sequence[int] = DEFAULT_BATCHES,
    repeats: int = 15,
    runs: int = 20,
    warmup: int = 5,
) -> None:
    """Fill in each contender's output difference and per-frame milliseconds (median of all calls)."""
    expected = rivals[0].run(pcm)
    for rival in rivals:
        got = rival.run(pcm)
        rival.max_abs_vs_reference = float(np.abs(got.astype(np.float64) - expected).max())
    for batch in batches:
        feed = np.ascontiguousarray(pcm[np.arange(batch) % len(pcm)])
        for rival in rivals:
            for _ in range(warmup):
                rival.run(feed)
        samples: dict[str, list[float]] = {r.name: [] for r in rivals}
        for _ in range(repeats):
            for rival in rivals:
                for _ in range(runs):
                    start = time.perf_counter()
                    rival.run(feed)
                    samples[rival.name].append((time.perf_counter() - start) * 1e3 / batch)
        for rival in rivals:
            rival.ms_per_frame[batch] = float(np.median(samples[rival.name]))


def render(rivals: Sequence[Contender], batches: Sequence[int]) -> str:
    """Markdown table: ms per frame and ratio to the reference at each batch size."""
    head = ["front end", "max abs diff vs reference"]
    for b in batches:
        head += [f"batch {b} ms/frame", f"batch {b} ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    reference = rivals[0]
    for rival in rivals:
        cells = [rival.name, f"{rival.max_abs_vs_reference:.2e}"]
        for b in batches:
            ms = rival.ms_per_frame[b]
            cells += [f"{ms:.3f}", f"{ms / reference.ms_per_frame[b]:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_bench(
    settings: OntimeSettings,
    out: TextIO,
    batches: Sequence[int] = DEFAULT_BATCHES,
    repeats: int = 15,
    runs: int = 20,
    reference: str = REFERENCE,
) -> list[Contender]:
    """Measure and print the table; returns the contenders with their numbers."""
    from threadpoolctl import threadpool_limits

    rivals = contenders(settings, reference)
    pcm = real_pcm(settings.pipeline)
    threads = settings.pipeline.stages["preprocess"].threads
    out.write(
        f"front end cost per frame on {len(pcm)} real clips: median of {repeats} interleaved repeats "
        f"x {runs} calls each; {threads} thread(s) each (onnxruntime intra-op as the preprocess stage, "
        "numpy BLAS pinned alike)\n\n"
    )
    with threadpool_limits(limits=threads):
        measure(rivals, pcm, batches, repeats, runs)
    out.write(render(rivals, batches) + "\n")
    return rivals


def register_cli(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "frontend", help="log-mel front end per frame: reference STFT graph vs served graph vs numpy"
    )
    bench.add_argument(
        "--batches", default=",".join(map(str, DEFAULT_BATCHES)), help="batch sizes, e.g. 1,16"
    )
    bench.add_argument("--repeats", type=int, default=15, help="interleaved repeats (median taken)")
    bench.add_argument("--runs", type=int, default=20, help="calls per contender per repeat")
    bench.add_argument("--reference", default=REFERENCE, help="model variant the ratios are against")
    bench.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    batches = tuple(int(b) for b in args.batches.split(",") if b.strip())
    run_bench(args.load_settings(), sys.stdout, batches, args.repeats, args.runs, args.reference)
    return 0
