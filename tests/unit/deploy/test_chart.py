"""helm/ontime rendered by a real helm (.ci/helm builds it), checked against what the workers need
and validated offline: Kubernetes schemas for core kinds, CRD field schemas for KEDA/Prometheus."""

from __future__ import annotations

import copy
import os
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploykit.manifests import CHART, PRODUCTION_VALUES, ROOT, errors, helm_binary, render
from workers.config.settings import load_settings

STAGES = ("preprocess", "infer", "postprocess")
HELM = helm_binary()
if HELM is None and os.environ.get("CI"):
    raise RuntimeError("CI must build helm first (.ci/helm)")
pytestmark = pytest.mark.skipif(HELM is None, reason="helm not built: run .ci/helm")

Manifest = dict[str, Any]


def by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["labels"].get("app.kubernetes.io/component", d["metadata"]["name"]): d
            for d in docs if d["kind"] == kind}  # fmt: skip


@pytest.fixture(scope="module")
def default() -> list[Manifest]:
    return render()


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    return render([PRODUCTION_VALUES])


def env_of(deployment: Manifest) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_every_rendered_manifest_is_valid(default: list[Manifest], production: list[Manifest]) -> None:
    problems = [line for doc in default + production for line in errors(doc)]
    assert not problems, "\n".join(problems)
    kinds = {d["kind"] for d in production}
    assert {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"} <= kinds


def test_validation_is_not_vacuous(production: list[Manifest]) -> None:
    deployment = copy.deepcopy(by_kind(production, "Deployment")["infer"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    assert errors(deployment)
    scaled = copy.deepcopy(by_kind(production, "ScaledObject")["infer"])
    scaled["spec"]["triggers"][0]["metadata"]["version"] = "1.0.0"  # KEDA's default: Kafka 4 refuses it
    assert errors(scaled)
    scaled["spec"]["triggers"][0]["metadata"]["version"] = "3.6.0"
    scaled["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "5"
    assert errors(scaled)


def test_one_deployment_per_stage_labelled_with_its_component(default: list[Manifest]) -> None:
    deployments = by_kind(default, "Deployment")
    assert set(deployments) == set(STAGES)
    for stage, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == stage
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance"} <= set(labels)
        assert d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == stage
        assert d["spec"]["template"]["spec"]["containers"][0]["args"] == ["--stage", stage]


def test_pipeline_file_comes_from_the_configmap_the_worker_reads(default: list[Manifest]) -> None:
    shipped = (ROOT / "pipelines/acoustic/pipeline.yaml").read_text()
    assert (CHART / "files/pipeline.yaml").read_text() == shipped  # a symlink: the chart never drifts
    config = next(d for d in default if d["kind"] == "ConfigMap")
    assert yaml.safe_load(config["data"]["pipeline.yaml"]) == yaml.safe_load(shipped)
    for d in by_kind(default, "Deployment").values():
        spec = d["spec"]["template"]["spec"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "pipeline")
        assert env_of(d)["ONTIME_PIPELINE_FILE"] == mount["mountPath"] + "/pipeline.yaml"
        volume = next(v for v in spec["volumes"] if v["name"] == "pipeline")
        assert volume["configMap"]["name"] == config["metadata"]["name"]


def test_probes_grace_and_static_membership(default: list[Manifest]) -> None:
    worker = load_settings("acoustic").worker
    for d in by_kind(default, "Deployment").values():
        spec = d["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["port"] == "metrics"
        assert spec["terminationGracePeriodSeconds"] > worker.flush_timeout_s
        assert env_of(d)["ONTIME_KAFKA__GROUP_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert spec["securityContext"]["runAsNonRoot"] is True


def test_autoscaled_deployments_carry_no_replica_count(
    default: list[Manifest], production: list[Manifest]
) -> None:
    for docs in (default, production):
        for d in by_kind(docs, "Deployment").values():
            assert "replicas" not in d["spec"]
    fixed = by_kind(render(sets=["autoscaling.mode=none"]), "Deployment")
    assert fixed["infer"]["spec"]["replicas"] == 2


def test_without_keda_each_stage_gets_a_cpu_hpa(default: list[Manifest]) -> None:
    hpas = by_kind(default, "HorizontalPodAutoscaler")
    assert set(hpas) == set(STAGES)
    assert not by_kind(default, "ScaledObject")
    metric = hpas["infer"]["spec"]["metrics"][0]
    assert metric["resource"]["name"] == "cpu"


def test_keda_scales_each_stage_on_its_lag_and_its_oldest_frame(production: list[Manifest]) -> None:
    pipeline = load_settings("acoustic").pipeline
    scaled = by_kind(production, "ScaledObject")
    assert set(scaled) == set(STAGES) and not by_kind(production, "HorizontalPodAutoscaler")
    for stage, so in scaled.items():
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] == by_kind(production, "Deployment")[stage]["metadata"]["name"]
        assert spec["maxReplicaCount"] <= pipeline.topics.partitions
        kafka, prom = spec["triggers"]
        assert kafka["metadata"]["consumerGroup"] == pipeline.group_id(stage)
        assert kafka["metadata"]["topic"] == pipeline.input_topic(stage)
        major, minor, _ = (int(x) for x in kafka["metadata"]["version"].split("."))
        assert (major, minor) >= (2, 1)
        assert kafka["metadata"]["sasl"] == "scram_sha512" and kafka["metadata"]["tls"] == "enable"
        assert kafka["authenticationRef"]["name"] == by_kind(production, "TriggerAuthentication").popitem()[0]
        assert "ontime_oldest_unprocessed_age_seconds" in prom["metadata"]["query"]
        assert float(prom["metadata"]["threshold"]) == pytest.approx(pipeline.stage_budget_ms(stage) / 1000)


def test_secrets_reach_the_worker_as_files(production: list[Manifest]) -> None:
    for stage, d in by_kind(production, "Deployment").items():
        env = env_of(d)
        assert env["ONTIME_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["ONTIME_KAFKA__SASL_USERNAME"] == f"ontime-{stage}"
        assert "ONTIME_KAFKA__SASL_PASSWORD" not in env
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-sasl"]["secret"]["items"] == [{"key": f"ontime-{stage}", "path": "password"}]
        assert env["ONTIME_KAFKA__SASL_PASSWORD_FILE"] == "/etc/ontime/kafka-sasl/password"
        for key in (
            "CA_LOCATION",
            "CERTIFICATE_LOCATION",
            "KEY_LOCATION",
            "KEY_PASSWORD_FILE",
        ):
            assert env[f"ONTIME_KAFKA__SSL_{key}"].startswith("/etc/ontime/kafka-tls/")


def test_alerts_cover_late_share_dlq_age_and_readiness(production: list[Manifest]) -> None:
    rules = next(d for d in production if d["kind"] == "PrometheusRule")["spec"]["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == {
        "OntimeLateShareHigh", "OntimeDeadLettersRate", "OntimeOldestFrameOverStageShare",
        "OntimeOldestFrameOverBudget", "OntimeStageNotReady",
    }  # fmt: skip
    infer_share = next(
        r
        for r in rules
        if r["alert"] == "OntimeOldestFrameOverStageShare" and r["labels"]["stage"] == "infer"
    )
    assert infer_share["expr"].endswith("> 0.05")  # 250 ms × 0.20


def test_drift_alert_compares_each_group_with_its_cards_threshold(production: list[Manifest]) -> None:
    groups = next(d for d in production if d["kind"] == "PrometheusRule")["spec"]["groups"]
    drift = next(g for g in groups if g["name"].endswith(".drift"))
    (rule,) = drift["rules"]
    assert rule["alert"] == "OntimeDrift" and rule["for"] == "15m"
    assert "ontime_drift_score{" in rule["expr"] and "ontime_drift_threshold{" in rule["expr"]
    assert "on (pipeline, stage, group)" in rule["expr"]
    assert rule["annotations"]["runbook"] == "docs/operations.md#ontimedrift"


def test_a_refused_model_version_alerts_with_its_reason(production: list[Manifest]) -> None:
    groups = next(d for d in production if d["kind"] == "PrometheusRule")["spec"]["groups"]
    (rule,) = next(g for g in groups if g["name"].endswith(".models"))["rules"]
    assert rule["alert"] == "OntimeModelRefused"
    assert "ontime_model_changes_total{" in rule["expr"] and 'result!="applied"' in rule["expr"]
    assert rule["annotations"]["runbook"] == "docs/operations.md#ontimemodelrefused"


def test_pdb_and_service_per_stage(default: list[Manifest]) -> None:
    assert set(by_kind(default, "PodDisruptionBudget")) == set(STAGES)
    for svc in by_kind(default, "Service").values():
        assert svc["spec"]["ports"][0]["name"] == "metrics"


@pytest.mark.parametrize(
    ("sets", "why"),
    [
        (["stages.infer.bogus=1"], "additional properties"),
        (["kafka.securityProtocol=TLS"], "securityProtocol"),
        (["autoscaling.keda.kafkaVersion=1.0.0"], "kafkaVersion"),
        (["stages.infer.autoscaling.maxReplicas=7"], "exceeds the 6 partitions"),
        (["kafka.securityProtocol=SASL_SSL"], "secretName is required"),
    ],
)
def test_chart_refuses_bad_values(sets: list[str], why: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render(sets=sets)
    assert why in failed.value.stderr
