from pathlib import Path

import pytest
import yaml

from workers.config.settings import BOOTSTRAP_ENV, bootstrap_from_env, load_settings
from workers.errors import ConfigError


def test_bundled_pipeline_loads_with_its_budget() -> None:
    settings = load_settings("acoustic")
    spec = settings.pipeline
    assert spec.budget_ms == 250
    assert spec.group_id("infer") == "ontime.acoustic.infer"
    assert spec.input_topic("infer") == spec.topics.features
    assert spec.output_topic("postprocess") == spec.topics.results
    shares = sum(s.budget_share for s in spec.stages.values()) + spec.transport_share
    assert shares <= 1.0


def test_environment_beats_yaml_and_flags_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONTIME_PIPELINE__BUDGET_MS", "300")
    monkeypatch.setenv("ONTIME_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    settings = load_settings("acoustic")
    assert settings.pipeline.budget_ms == 300
    assert settings.pipeline.topics.raw == "acoustic.raw"  # the rest of the YAML is kept
    flagged = load_settings("acoustic", {"kafka": {"bootstrap_servers": "127.0.0.1:1"}})
    assert flagged.kafka.bootstrap_servers == "127.0.0.1:1"


def test_invalid_field_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONTIME_PIPELINE__STAGES__INFER__BATCH__MAX_SIZE", "0")
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.infer\.batch\.max_size"):
        load_settings("acoustic")


def test_shares_over_budget_and_missing_stage_are_rejected(tmp_path: Path) -> None:
    data = yaml.safe_load(Path("pipelines/acoustic/pipeline.yaml").read_text())
    data["transport_share"] = 0.9
    bad = tmp_path / "over.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="budget shares"):
        load_settings(str(bad))
    del data["stages"]["postprocess"]
    data["transport_share"] = 0.1
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="missing postprocess"):
        load_settings(str(bad))


def test_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "nope.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(str(broken))


def test_secrets_reach_librdkafka_but_not_repr() -> None:
    settings = load_settings(
        "acoustic",
        {
            "kafka": {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "u",
                "sasl_password": "hunter2",
                "extra": {"linger.ms": "3"},
            }
        },
    )
    conf = settings.kafka.as_librdkafka_dict()
    assert conf["sasl.password"] == "hunter2"
    assert conf["linger.ms"] == "3"
    assert "hunter2" not in repr(settings)


def test_bootstrap_from_env_names_an_existing_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    assert bootstrap_from_env() is None
    monkeypatch.setenv(BOOTSTRAP_ENV, "  ")
    assert bootstrap_from_env() is None
    monkeypatch.setenv(BOOTSTRAP_ENV, "kafka-0:9092,kafka-1:9092")
    assert bootstrap_from_env() == "kafka-0:9092,kafka-1:9092"
