"""Reason codes written to `ontime-error-reason`: why a frame left the pipeline on `P.late` or `P.dlq`.

The one definition the stages, the loop, the errors, `schemas.ErrorRecord`, the tools and
docs/contract.md share (tests/unit/test_contract.py compares the doc with these). A leaf module:
it imports nothing from the project, so every layer may use it.
"""

from __future__ import annotations

from typing import Final, Literal

# P.late: the frame cannot make, or did not make, its deadline.
EXPIRED: Final = "expired"
"""The deadline had passed when the stage took the frame; no compute was spent."""
INSUFFICIENT_BUDGET: Final = "insufficient-budget"
"""Time left is less than the stage's expected cost plus the downstream reserve; no compute was spent."""
MISSED: Final = "missed"
"""Admitted, but finished the stage after the deadline."""
SKIPPED: Final = "skipped"
"""A range of a backlog the stage seeked past unread: every record in it was older than any deadline
could allow. One record stands for `ontime-late-count` frames."""

# P.dlq: the frame can never be processed; retrying would fail the same way.
POISON: Final = "poison"
"""The record itself is unreadable (e.g. garbled headers), or a PoisonMessage without a finer code."""
BAD_HEADER: Final = "bad-header"
"""A header the pipeline reads is not UTF-8, too long, or malformed (docs/reliability.md)."""
BAD_CONTENT_TYPE: Final = "bad-content-type"
"""`ontime-content-type` is missing or is not what the stage accepts."""
BAD_SHAPE: Final = "bad-shape"
"""The payload size does not match the declared dtype and shape (or the frame length)."""
BAD_ENCODING: Final = "bad-encoding"
"""The payload is not a valid instance of its content type (a corrupt or truncated image, say)."""
BAD_DTYPE: Final = "bad-dtype"
"""A tensor's dtype is not what the stage's model takes."""
BAD_SAMPLES: Final = "bad-samples"
"""NaN, Inf or otherwise invalid values."""
MODEL_ERROR: Final = "model-error"
"""The model raised on this frame even when run alone."""
TOO_LARGE: Final = "too-large"
"""An output the producer or broker refuses for its size or form; dead-lettered as a source reference."""

LATE_REASONS: Final = (EXPIRED, INSUFFICIENT_BUDGET, MISSED, SKIPPED)
DLQ_REASONS: Final = (
    BAD_HEADER,
    BAD_CONTENT_TYPE,
    BAD_SHAPE,
    BAD_ENCODING,
    BAD_DTYPE,
    BAD_SAMPLES,
    POISON,
    MODEL_ERROR,
    TOO_LARGE,
)

ShedReason = Literal["expired", "insufficient-budget"]
"""Why admission sheds a frame before compute (a test checks it equals EXPIRED, INSUFFICIENT_BUDGET)."""
