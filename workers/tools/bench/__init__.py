"""`ontime bench …`: benchmarks are programs that print tables, not timed tests.

Each benchmark module adds its own sub-verb with `register_cli(subparsers)`. They are imported
only when the CLI is built, so a peer program under `peers/` imports none of the harness.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_cli"]


def register_cli(subparsers: Any) -> None:
    """Add the `bench` verb and one sub-verb per benchmark."""
    from workers.tools.bench import deadlines, drift, events, faults, frontend, fuzz, goodput

    bench = subparsers.add_parser("bench", help="benchmarks: drive the real pipeline and print tables")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    deadlines.register_cli(kinds)
    drift.register_cli(kinds)
    faults.register_cli(kinds)
    frontend.register_cli(kinds)
    events.register_cli(kinds)
    fuzz.register_cli(kinds)
    goodput.register_cli(kinds)
