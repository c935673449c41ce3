"""A small stand-in for a consumed confluent_kafka.Message: the methods Envelope.from_record calls.

`headers` may be an exception, raised by `headers()` as confluent-kafka does for header names
that are not UTF-8 (until `set_headers` replaces them, as workers.messages.headers.read does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RawHeaders = list[tuple[str, bytes | str | None]]


@dataclass
class Record:
    hdrs: RawHeaders | BaseException | None = field(default_factory=list)
    val: bytes | None = b""
    k: bytes | None = b"dev-1"
    topic_name: str = "p.raw"
    part: int = 0
    off: int = 7
    ts: int = 1_700_000_000_000

    def headers(self) -> RawHeaders | None:
        if isinstance(self.hdrs, BaseException):
            raise self.hdrs
        return self.hdrs

    def set_headers(self, headers: RawHeaders) -> None:
        self.hdrs = headers

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.val

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)
