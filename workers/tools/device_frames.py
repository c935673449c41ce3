"""What a simulated device puts on the wire: its key and the headers of a raw frame (a leaf that
the clip fleet and the streaming fleet share)."""

from __future__ import annotations

from workers.messages import headers as h

DEVICE_PREFIX = "dev-"  # when the pipeline declares no `devices.key_prefix`


def device_ids(count: int, prefix: str = DEVICE_PREFIX) -> list[str]:
    """`mic-0001` … : the Kafka key of each simulated device."""
    return [f"{prefix}{i:04d}" for i in range(1, count + 1)]


def frame_headers(
    frame_id: str, captured_ms: int, content_type: str, deadline_ms: int | None
) -> h.HeaderList:
    """Headers a device puts on a raw frame; without a deadline the first stage stamps one."""
    out: h.HeaderList = [
        (h.ID, frame_id.encode()),
        (h.CAPTURED_MS, str(captured_ms).encode()),
        (h.CONTENT_TYPE, content_type.encode()),
    ]
    if deadline_ms is not None:
        out.append((h.DEADLINE_MS, str(deadline_ms).encode()))
    return out
