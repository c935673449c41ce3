"""Structured logs: one line per notable event (start, assignment, stop, failure), never per message.

`event(log, "assigned", partitions=[...])` writes `assigned partitions=[...]` as text, or one JSON
object per line (`worker.log_json`) for log shippers. Per-message detail goes to DEBUG only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_FIELDS = "ontime_fields"


def setup_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Configure the root logger once for a CLI process (stderr, text or JSON lines)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # librdkafka's own logs come through confluent-kafka's logger only when asked; keep them terse.
    logging.getLogger("confluent_kafka").setLevel(logging.WARNING)


def event(log: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the event `name` with key/value fields."""
    if log.isEnabledFor(level):
        log.log(level, name, extra={_FIELDS: fields}, stacklevel=2)


class TextFormatter(logging.Formatter):
    """`2026-01-01T00:00:00.123Z INFO ontime.worker assigned partitions=[...] stage=infer`."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        text = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            text += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (epoch s), level, logger, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text
