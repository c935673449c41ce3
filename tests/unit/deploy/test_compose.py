"""docker-compose.yml against the Compose specification's JSON Schema, and what it must deploy.

The schema is the one check-jsonschema vendors (`vendor.compose-spec`, from the compose-spec
project via SchemaStore), read offline from the installed distribution (tests/deploykit/compose.py).
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploykit.compose import (
    COMPOSE_FILE,
    ROOT,
    SECURE_OVERLAY,
    compose_schema,
    load,
    raw,
    schema_errors,
)
from tests.deploykit.image import stages
from workers.config.settings import load_settings

SECURE_ENV = {"ONTIME_SECURE_BOOTSTRAP": "broker.example:9093"}
STAGES = ("preprocess", "infer", "postprocess")


@pytest.mark.parametrize("path", [COMPOSE_FILE, SECURE_OVERLAY], ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(path: Any) -> None:
    errors = schema_errors(path)
    assert not errors, "\n".join(errors)


def test_schema_check_is_not_vacuous() -> None:
    bad = raw(COMPOSE_FILE)
    bad["services"]["infer"]["deploy"]["replicas"] = ["three"]
    bad["services"]["kafka"]["no_such_key"] = 1
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert len(list(validator.iter_errors(bad))) >= 2


def test_the_whole_stack_is_there() -> None:
    services = load()["services"]
    assert {"kafka", "topic-init", *STAGES, "simulator", "otel-collector", "jaeger", "prometheus"} <= set(
        services
    )
    assert services["kafka"]["image"].startswith("apache/kafka:4.1.")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert "grafana" in services


def test_workers_wait_for_topics_and_infer_runs_several_replicas() -> None:
    services = load()["services"]
    assert services["topic-init"]["command"] == ["topics", "create"]
    assert services["topic-init"]["restart"] == "no"
    partitions = load_settings("acoustic").pipeline.topics.partitions
    for name in STAGES:
        svc = services[name]
        assert svc["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
        assert svc["command"] == ["--stage", name]
        assert svc["build"]["target"] == "worker"
    assert 1 < services["infer"]["deploy"]["replicas"] <= partitions


def test_workers_get_the_mounted_pipeline_file_and_the_image_builds_their_target() -> None:
    services = load()["services"]
    targets = {s.name for s in stages()}
    for name in (*STAGES, "topic-init", "simulator"):
        svc = services[name]
        assert svc["build"]["target"] in targets
        mount = next(v for v in svc["volumes"] if v.endswith(":ro") and "pipeline.yaml" in v)
        host, container, _ = mount.split(":")
        assert (ROOT / host).is_file()
        assert svc["environment"]["ONTIME_PIPELINE_FILE"] == container


def test_drain_fits_in_the_stop_grace_period() -> None:
    worker = load_settings("acoustic").worker
    for name in STAGES:
        grace = load()["services"][name]["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > worker.flush_timeout_s


def test_prometheus_scrapes_every_worker_replica_on_the_metrics_port() -> None:
    services = load()["services"]
    prom = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    names = {n for job in prom["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]}
    assert set(STAGES) <= names
    port = {sd["port"] for job in prom["scrape_configs"] for sd in job.get("dns_sd_configs", [])}
    assert port == {int(services["infer"]["environment"]["ONTIME_WORKER__METRICS_PORT"])}


def test_grafana_gets_the_dashboard_and_a_prometheus_data_source() -> None:
    grafana = load()["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert "./helm/ontime/dashboards/ontime.json" in mounts
    provisioning = ROOT / mounts["./deploy/compose/grafana/provisioning"].replace(
        "/etc/grafana/provisioning", "deploy/compose/grafana/provisioning"
    )
    source = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards/ontime.yaml").read_text())
    dashboard_dir = provider["providers"][0]["options"]["path"]
    assert mounts["./helm/ontime/dashboards/ontime.json"].startswith(dashboard_dir + "/")


def test_traces_go_from_every_worker_to_the_collector_and_on_to_jaeger() -> None:
    services = load()["services"]
    collector = yaml.safe_load((ROOT / "deploy/compose/otel-collector.yaml").read_text())
    exporters = collector["service"]["pipelines"]["traces"]["exporters"]
    assert any(collector["exporters"][e]["endpoint"].startswith("jaeger:") for e in exporters)
    for name in STAGES:
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_secure_overlay_carries_every_security_setting_from_files() -> None:
    services = load(COMPOSE_FILE, SECURE_OVERLAY, env=SECURE_ENV)["services"]
    secrets = load(COMPOSE_FILE, SECURE_OVERLAY, env=SECURE_ENV)["secrets"]
    for name in (*STAGES, "topic-init", "simulator"):
        env = services[name]["environment"]
        assert env["ONTIME_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["ONTIME_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert "ONTIME_KAFKA__SASL_PASSWORD" not in env  # only as a file
        for key in ("SASL_PASSWORD_FILE", "SSL_CA_LOCATION", "SSL_CERTIFICATE_LOCATION", "SSL_KEY_LOCATION"):
            path = env[f"ONTIME_KAFKA__{key}"]
            assert (
                path.startswith("/run/secrets/")
                and path.removeprefix("/run/secrets/") in services[name]["secrets"]
            )
        # each service is its own principal, so ACLs can be least-privilege
    users = {services[n]["environment"]["ONTIME_KAFKA__SASL_USERNAME"] for n in (*STAGES, "simulator")}
    assert len(users) == 4
    assert all(s["file"].startswith("./deploy/compose/secrets/") for s in secrets.values())


def test_secure_overlay_refuses_to_start_without_a_broker_address() -> None:
    with pytest.raises(KeyError, match="ONTIME_SECURE_BOOTSTRAP"):
        load(COMPOSE_FILE, SECURE_OVERLAY, env={})
