"""The least-privilege ACL table: each principal gets exactly what its job needs, nothing more."""

from __future__ import annotations

from confluent_kafka.admin import AclBinding

from workers.config.settings import load_settings
from workers.kafka.acls import (
    DEVICE,
    DOWNSTREAM,
    Grant,
    control_reader_group,
    pipeline_grants,
    principals,
    shadow_group,
    stage_principal,
)
from workers.kafka.clients import producer_config


def _by_user(grants: list[Grant]) -> dict[str, set[tuple[str, str, str, str]]]:
    out: dict[str, set[tuple[str, str, str, str]]] = {}
    for g in grants:
        out.setdefault(g.user, set()).add((g.operation, g.resource, g.name, g.pattern))
    return out


def test_each_stage_reads_its_input_and_group_and_writes_its_outputs_only() -> None:
    p = load_settings("acoustic").pipeline
    table = _by_user(pipeline_grants(p))
    for stage, out in (
        ("preprocess", p.topics.features),
        ("infer", p.topics.scores),
        ("postprocess", p.topics.results),
    ):
        assert table[stage_principal(stage)] == {
            ("READ", "TOPIC", p.input_topic(stage), "LITERAL"),
            ("READ", "GROUP", p.group_id(stage), "LITERAL"),
            ("WRITE", "TOPIC", out, "LITERAL"),
            ("WRITE", "TOPIC", p.topics.late, "LITERAL"),
            ("WRITE", "TOPIC", p.topics.dlq, "LITERAL"),
            ("READ", "TOPIC", p.topics.control, "LITERAL"),
            ("WRITE", "TOPIC", p.topics.control, "LITERAL"),
            ("READ", "GROUP", control_reader_group(p), "LITERAL"),
            ("WRITE", "TOPIC", p.topics.shadow, "LITERAL"),
            ("READ", "GROUP", shadow_group(p, stage), "LITERAL"),
        }


def test_device_only_writes_raw_and_downstream_only_reads_results() -> None:
    p = load_settings("acoustic").pipeline
    table = _by_user(pipeline_grants(p))
    assert table[DEVICE] == {("WRITE", "TOPIC", p.topics.raw, "LITERAL")}
    assert table[DOWNSTREAM] == {
        ("READ", "TOPIC", p.topics.results, "LITERAL"),
        ("READ", "GROUP", DOWNSTREAM, "PREFIXED"),
    }
    assert set(table) == set(principals())  # no grant to anyone else, no wildcard principal


def test_exactly_once_adds_a_transactional_id_prefix_per_stage() -> None:
    p = load_settings("acoustic").pipeline
    plain = pipeline_grants(p)
    eos = pipeline_grants(p, exactly_once=True)
    added = [g for g in eos if g not in plain]
    assert {(g.user, g.operation) for g in added} == {
        (stage_principal(s), op)
        for s in ("preprocess", "infer", "postprocess")
        for op in ("WRITE", "DESCRIBE")
    }
    assert all(g.resource == "TRANSACTIONAL_ID" and g.pattern == "PREFIXED" for g in added)
    assert {g.name for g in added} == {f"{p.group_id(s)}." for s in ("preprocess", "infer", "postprocess")}


def test_transactional_ids_of_the_producers_fall_under_the_granted_prefix() -> None:
    settings = load_settings(
        "acoustic",
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "pipeline": {"stages": {"infer": {"exactly_once": True}}},
        },
    )
    grants = [g for g in pipeline_grants(settings.pipeline) if g.resource == "TRANSACTIONAL_ID"]
    assert {g.user for g in grants} == {stage_principal("infer")}  # only the stage that uses it
    tid = str(producer_config(settings, "infer")["transactional.id"])
    assert all(tid.startswith(g.name) for g in grants)


def test_grants_become_allow_bindings_for_one_user_from_any_host() -> None:
    grant = Grant(DEVICE, "WRITE", "TOPIC", "acoustic.raw")
    binding = grant.binding()
    assert isinstance(binding, AclBinding)
    assert binding.principal == f"User:{DEVICE}"
    assert binding.host == "*"
    assert binding.permission_type.name == "ALLOW"
    assert binding.operation.name == "WRITE"
    assert "acoustic.raw" in grant.row()
