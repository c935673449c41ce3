"""What a user would run instead of ontime, for `ontime bench goodput` to compare against.

Each peer is a small program of its own (`python -m workers.tools.bench.peers.<name>`), started
as a process by the benchmark, reading `P.raw` and writing JSON results to `P.results`. Nothing
here may import the benchmark or the worker loop: the Quix Streams peer runs in its own
environment (.venv/quix), which has only what quix-requirements.txt lists.
"""
