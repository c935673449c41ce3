"""`ontime bench …`: benchmarks are programs that print tables, not timed tests.

Each benchmark module adds its own sub-verb with `register_cli(subparsers)`.
"""

from __future__ import annotations

from typing import Any

from workers.tools.bench import deadlines, faults, fuzz

__all__ = ["register_cli"]


def register_cli(subparsers: Any) -> None:
    """Add the `bench` verb and one sub-verb per benchmark."""
    bench = subparsers.add_parser("bench", help="benchmarks: drive the real pipeline and print tables")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    deadlines.register_cli(kinds)
    faults.register_cli(kinds)
    fuzz.register_cli(kinds)
