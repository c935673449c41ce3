"""Names the aggregator uses on the broker, importable without faust (demo, tests, topics)."""

from __future__ import annotations

from pathlib import Path

from workers.config.settings import OntimeSettings

STAGE = "aggregate"
TABLE = "device-state"


def app_id(settings: OntimeSettings) -> str:
    """Consumer group and prefix of the changelog topic: `ontime.<pipeline>.aggregate`."""
    return settings.pipeline.group_id(STAGE)


def changelog_topic(settings: OntimeSettings) -> str:
    """The compacted topic holding every device's detector state (JSON)."""
    return f"{app_id(settings)}-{TABLE}-changelog"


def data_dir(settings: OntimeSettings) -> Path:
    """faust's data directory of this app: `<aggregate.data_dir>/<app id>` (never the working dir)."""
    return settings.aggregate.data_dir / app_id(settings)
