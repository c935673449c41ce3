"""Canary / A-B: a sticky share of devices answered by a candidate version inside the serving group.

A device is in the canary when the hash of its key falls below the share, so the same device
always gets the same version, and raising the share only adds devices (none switches back and
forth). Frames without a key stay on the serving version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from workers.messages.envelope import Envelope
from workers.stages.model import OnnxModel

T = TypeVar("T")


def bucket(key: bytes) -> float:
    """A device's place in [0, 1): the first 8 bytes of blake2b(key), stable across processes."""
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class Canary:
    """The candidate version and the share of devices it answers."""

    model: OnnxModel
    share: float

    def takes(self, key: bytes | None) -> bool:
        return key is not None and bucket(key) < self.share

    def split(
        self, batch: Sequence[Envelope], members: list[tuple[int, T]]
    ) -> tuple[list[tuple[int, T]], list[tuple[int, T]]]:
        """`members` (indices into `batch`) as (serving, candidate)."""
        serving: list[tuple[int, T]] = []
        candidate: list[tuple[int, T]] = []
        for member in members:
            (candidate if self.takes(batch[member[0]].key) else serving).append(member)
        return serving, candidate
