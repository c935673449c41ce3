"""The topics every creator makes (CLI, demo, bench, tests): names, partitions and configs."""

from __future__ import annotations

from workers.config.settings import load_settings
from workers.config.spec import TOPIC_KINDS
from workers.kafka.topics import pipeline_topics


def test_pipeline_topics_carry_the_config_of_each_topic() -> None:
    topics = load_settings("acoustic").pipeline.topics
    made = {t.topic: t for t in pipeline_topics(topics)}
    assert list(made) == topics.all()
    assert [getattr(topics, kind) for kind in TOPIC_KINDS] == topics.all()[: len(TOPIC_KINDS)]
    assert made["acoustic.results"].config == {"message.timestamp.type": "LogAppendTime"}
    assert made["acoustic.control"].num_partitions == 1
    assert made["acoustic.control"].config["cleanup.policy"] == "compact"
    for name in ("acoustic.raw", "acoustic.features", "acoustic.scores", "acoustic.late", "acoustic.dlq"):
        assert made[name].num_partitions == topics.partitions
        assert made[name].config == {}  # CreateTime: the first stage stamps deadlines from it
        assert made[name].replication_factor == topics.replication_factor
