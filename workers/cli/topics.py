"""`ontime topics create|list|delete`: the pipeline's six topics, with partitions from its YAML.

The work is done by workers.kafka.topics (create is idempotent and waits until every partition
has a leader, so a worker or a device started right after it never races topic creation).
"""

from __future__ import annotations

import argparse
from typing import Any

from workers.config.settings import OntimeSettings
from workers.kafka.topics import create_topics, delete_topics, describe_topics


def register_cli(subparsers: Any) -> None:
    """Add `topics create|list|delete`; each needs `args.load_settings()` from workers.cli.main."""
    topics = subparsers.add_parser("topics", help="create, list or delete the pipeline's topics")
    verbs = topics.add_subparsers(dest="topics_verb", required=True, metavar="VERB")
    verbs.add_parser("create", help="create missing topics (idempotent), wait until ready").set_defaults(
        func=_cmd_create
    )
    verbs.add_parser("list", help="the pipeline's topics with partitions and replication").set_defaults(
        func=_cmd_list
    )
    delete = verbs.add_parser("delete", help="delete the pipeline's topics and their data")
    delete.add_argument("--yes", action="store_true", help="really delete (required)")
    delete.set_defaults(func=_cmd_delete)


def _cmd_create(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    created = create_topics(settings)
    topics = settings.pipeline.topics
    for name in topics.all():
        state = "created" if name in created else "exists"
        print(f"{name:32} {state:8} partitions={topics.partitions} rf={topics.replication_factor}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    want = settings.pipeline.topics.partitions
    missing = 0
    print(f"{'topic':32} {'partitions':>10} {'rf':>3}")
    for name, partitions, rf in describe_topics(settings):
        if partitions is None:
            missing += 1
            print(f"{name:32} {'missing':>10}")
            continue
        note = "" if partitions == want else f"  (config says {want})"
        print(f"{name:32} {partitions:>10} {rf:>3}{note}")
    return 1 if missing else 0


def _cmd_delete(args: argparse.Namespace) -> int:
    settings: OntimeSettings = args.load_settings()
    if not args.yes:
        print(f"refusing to delete {', '.join(settings.pipeline.topics.all())} without --yes")
        return 2
    deleted = delete_topics(settings)
    print(f"deleted {len(deleted)} topics: {', '.join(deleted) or '-'}")
    return 0
