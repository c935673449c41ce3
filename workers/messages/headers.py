"""Names of the `ontime-*` Kafka headers (docs/contract.md; no other module spells them), and reading
them from untrusted records.

Trust rules (docs/reliability.md):

- A header *name* that is not UTF-8 makes confluent-kafka's `Message.headers()` fail for the whole
  record; `read` turns that into `BadHeader`, so the record is dead-lettered, never a crash.
- Of a repeated header the **last** value wins (as Kafka's own `Headers.lastHeader`).
- Only the headers the pipeline reads are decoded, strictly as UTF-8; others are ignored.
- `INTERNAL` headers are written by ontime's stages; on a pipeline's input topic they come
  from a device and are dropped (workers/stages/stage.py counts and logs them).
- `ontime-stage-ms` is parsed with bounds: known stage names only, one pair per stage, finite
  numbers in [0, MAX_STAGE_MS], at most MAX_STAGE_MS_CHARS of header, so a result is always valid
  JSON and a re-rendered header never grows.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from workers.config.spec import STAGE_ORDER
from workers.errors import BadHeader

ID = "ontime-id"
DEADLINE_MS = "ontime-deadline-ms"
CAPTURED_MS = "ontime-captured-ms"
CONTENT_TYPE = "ontime-content-type"
STAGE_MS = "ontime-stage-ms"
MODEL = "ontime-model"
STATUS = "ontime-status"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

ERROR_STAGE = "ontime-error-stage"
ERROR_REASON = "ontime-error-reason"
ERROR_DETAIL = "ontime-error-detail"
SOURCE_TOPIC = "ontime-source-topic"
SOURCE_PARTITION = "ontime-source-partition"
SOURCE_OFFSET = "ontime-source-offset"
# On a P.late record that stands for a skipped range of frames: how many (default 1).
LATE_COUNT = "ontime-late-count"

# Stands in for the headers of a record whose header names could not be decoded (see `read`).
UNREADABLE = "ontime-unreadable-headers"
# Written only by ontime's stages; a device (on P.raw) has no business setting them.
INTERNAL = (
    STAGE_MS,
    MODEL,
    STATUS,
    ERROR_STAGE,
    ERROR_REASON,
    ERROR_DETAIL,
    SOURCE_TOPIC,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
    LATE_COUNT,
)
# The headers a stage reads; any other header is never decoded.
READ = (ID, DEADLINE_MS, CAPTURED_MS, CONTENT_TYPE, STAGE_MS, MODEL, STATUS, TRACEPARENT, TRACESTATE)

MAX_STAGE_MS_CHARS = 512
MAX_STAGE_MS = 86_400_000.0  # a day: any longer queue or compute time is a lie

HeaderList = list[tuple[str, bytes]]
"""Headers as confluent-kafka produces them."""

RawHeaders = list[tuple[str, bytes | str | None]]


def is_internal(name: str) -> bool:
    return name in INTERNAL or name.startswith(("ontime-error-", "ontime-source-"))


def read(msg: Any) -> RawHeaders:
    """`msg.headers()`, or BadHeader when confluent-kafka cannot decode a header name.

    confluent-kafka (2.16) fails inside C on a header name that is not UTF-8: it returns a list
    holding a NULL *with* an exception set, and caches that list for every later call. Called from
    Python bytecode, CPython 3.11 turns this into SystemError only until the call site is
    specialized (after ~8 calls); then the broken list comes back, the exception surfaces later,
    and touching the list crashes the process. So the call goes through C (`methodcaller`, always
    checked), and on failure the message's headers are replaced with one `UNREADABLE` marker,
    which every later reader of the same message sees instead.
    """
    try:
        headers = list(_headers_of(msg) or ())
    except Exception as exc:  # SystemError wrapping UnicodeDecodeError, raised from C
        cause = exc.__cause__ or exc.__context__ or exc
        detail = f"header names are not UTF-8; no header could be read ({cause})"[:500]
        msg.set_headers([(UNREADABLE, detail.encode())])
        raise BadHeader(detail) from None
    if headers and headers[0][0] == UNREADABLE:
        marker = headers[0][1]
        raise BadHeader(marker.decode("utf-8", "replace") if isinstance(marker, bytes) else str(marker))
    for name, value in headers:
        if not isinstance(name, str) or not isinstance(value, bytes | str | None):
            raise BadHeader(f"header {name!r} is not a text name with a bytes value")
    return headers


_headers_of = operator.methodcaller("headers")


def decode(headers: Iterable[tuple[str, bytes | str | None]]) -> dict[str, str]:
    """The headers the pipeline reads, as text; the last of a repeated name wins.

    Raises BadHeader for a value that is not UTF-8 (every ontime header is text).
    """
    out: dict[str, str] = {}
    for key, value in headers:
        if key not in READ:
            continue
        if value is None:
            out[key] = ""
        elif isinstance(value, bytes):
            try:
                out[key] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadHeader(f"header {key} is not UTF-8: {value[:40]!r}") from None
        else:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadHeader(f"header {key} is not valid Unicode text") from None
            out[key] = value
    return out


def internal_names(headers: Iterable[tuple[str, bytes | str | None]]) -> tuple[str, ...]:
    """Names of the internal headers present, each once, in order of first appearance."""
    return tuple(dict.fromkeys(k for k, _ in headers if is_internal(k)))


def as_dict(headers: Iterable[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    """Every header as text, for tools reading ontime's own output; last wins, bad bytes replaced."""
    out: dict[str, str] = {}
    for key, value in headers or ():
        if value is None:
            out[key] = ""
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8", errors="replace")
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class StageTime:
    """Time one stage spent on one message: waiting in its queue, then computing."""

    stage: str
    queue_ms: float
    compute_ms: float

    def render(self) -> str:
        return f"{self.stage}={self.queue_ms:.2f}/{self.compute_ms:.2f}"


def parse_stage_ms(value: str | None) -> list[StageTime]:
    """Parse `preprocess=0.80/2.10,infer=3.00/1.20`; what is not a sane pair is skipped, never fatal.

    Kept: known stage names (first pair of each), finite numbers in [0, MAX_STAGE_MS]. A header
    longer than MAX_STAGE_MS_CHARS is ignored as a whole.
    """
    if not value or len(value) > MAX_STAGE_MS_CHARS:
        return []
    times: dict[str, StageTime] = {}
    for part in value.split(","):
        stage, _, rest = part.strip().partition("=")
        if stage not in STAGE_ORDER or stage in times:
            continue
        queue, _, compute = rest.partition("/")
        try:
            q, c = float(queue), float(compute)
        except ValueError:
            continue
        if all(math.isfinite(x) and 0.0 <= x <= MAX_STAGE_MS for x in (q, c)):
            times[stage] = StageTime(stage, q, c)
    return list(times.values())


def render_stage_ms(times: Sequence[StageTime]) -> str:
    return ",".join(t.render() for t in times)
