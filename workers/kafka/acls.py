"""Least-privilege ACLs of a pipeline: who may read and write which topic, group and transaction.

    ontime-<stage>     READ its input topic and its group `ontime.P.<stage>`;
                       WRITE its output, P.late and P.dlq; READ and WRITE P.control (latency
                       reports) and READ the control reader's group `ontime.P.control-reader`;
                       a shadow of the stage (workers/tools/shadow.py) WRITEs P.shadow and READs
                       its group `ontime.P.<stage>.shadow`;
                       with exactly-once, WRITE and DESCRIBE on TransactionalIds prefixed
                       `ontime.P.<stage>.` (workers/kafka/clients.py: one id per replica)
    ontime-device      WRITE P.raw, nothing else
    ontime-downstream  READ P.results and groups prefixed `ontime-downstream`

Anything not granted is denied (the StandardAuthorizer's default). READ and WRITE imply DESCRIBE
on a topic; Kafka ≥ 3 lets an idempotent producer with WRITE on a topic skip IDEMPOTENT_WRITE.
The plan is plain data (`Grant`), so docs, tests and `ontime broker up --secure` share one table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from workers.config.spec import STAGE_ORDER, PipelineSpec
from workers.errors import BrokerError

DEVICE = "ontime-device"
DOWNSTREAM = "ontime-downstream"

Resource = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "DESCRIBE"]


def control_reader_group(p: PipelineSpec) -> str:
    """The group id the workers' control-topic reader names (workers/loop/control.py); it only assigns."""
    return f"ontime.{p.name}.control-reader"


def shadow_group(p: PipelineSpec, stage: str) -> str:
    """The group a shadow of `stage` reads in, apart from the serving group (workers/tools/shadow.py)."""
    return f"{p.group_id(stage)}.shadow"


def stage_principal(stage: str) -> str:
    """SCRAM user name of a stage's workers."""
    return f"ontime-{stage}"


def principals() -> list[str]:
    """Every user a secured pipeline needs (besides the admin)."""
    return [*(stage_principal(s) for s in STAGE_ORDER), DEVICE, DOWNSTREAM]


@dataclass(frozen=True)
class Grant:
    """ALLOW `operation` on `resource` `name` (exact or as a prefix) to `User:user`, from any host."""

    user: str
    operation: Operation
    resource: Resource
    name: str
    pattern: Pattern = "LITERAL"

    def binding(self) -> Any:
        """The confluent-kafka `AclBinding` of this grant."""
        from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
        from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

        return AclBinding(
            ResourceType[self.resource],
            self.name,
            ResourcePatternType[self.pattern],
            f"User:{self.user}",
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )

    def row(self) -> str:
        name = f"{self.name}*" if self.pattern == "PREFIXED" else self.name
        return f"User:{self.user:18} {self.operation:8} {self.resource.lower():16} {name}"


def pipeline_grants(p: PipelineSpec, exactly_once: bool | None = None) -> list[Grant]:
    """The ACL table of pipeline `p` (see the module docstring).

    TransactionalId grants go to the stages whose spec says `exactly_once`, or to every stage
    when `exactly_once` is True (so a stage can be switched on later without new ACLs).
    """
    grants: list[Grant] = []
    for stage in STAGE_ORDER:
        user = stage_principal(stage)
        group = p.group_id(stage)
        grants += [
            Grant(user, "READ", "TOPIC", p.input_topic(stage)),
            Grant(user, "READ", "GROUP", group),
            *(Grant(user, "WRITE", "TOPIC", t) for t in (p.output_topic(stage), p.topics.late, p.topics.dlq)),
            Grant(user, "READ", "TOPIC", p.topics.control),
            Grant(user, "WRITE", "TOPIC", p.topics.control),
            Grant(user, "READ", "GROUP", control_reader_group(p)),
            Grant(user, "WRITE", "TOPIC", p.topics.shadow),
            Grant(user, "READ", "GROUP", shadow_group(p, stage)),
        ]
        if exactly_once or (exactly_once is None and p.stages[stage].exactly_once):  # type: ignore[index]
            grants += [
                Grant(user, "WRITE", "TRANSACTIONAL_ID", f"{group}.", "PREFIXED"),
                Grant(user, "DESCRIBE", "TRANSACTIONAL_ID", f"{group}.", "PREFIXED"),
            ]
    grants += [
        Grant(DEVICE, "WRITE", "TOPIC", p.topics.raw),
        Grant(DOWNSTREAM, "READ", "TOPIC", p.topics.results),
        Grant(DOWNSTREAM, "READ", "GROUP", DOWNSTREAM, "PREFIXED"),
    ]
    return grants


def apply_grants(admin: Any, grants: list[Grant], timeout: float = 30.0) -> int:
    """Create the ACLs and wait until the broker enforces them; returns how many were sent.

    Idempotent: creating an existing ACL is not an error. The broker learns new ACLs from the
    metadata log a moment after the create returns, so this waits until it lists them all.
    """
    if not grants:
        return 0
    futures = admin.create_acls([g.binding() for g in grants], request_timeout=timeout)
    for binding, future in futures.items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:  # KafkaException: name the ACL that failed
            raise BrokerError(f"cannot create ACL {binding}: {exc}") from None
    _wait_enforced(admin, grants, timeout)
    return len(grants)


def _wait_enforced(admin: Any, grants: list[Grant], timeout: float) -> None:
    from confluent_kafka.admin._acl import AclBindingFilter, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

    anything: Any = None  # the filter's wildcard (its stubs say str)
    everything = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    wanted = {g.binding() for g in grants}
    deadline = time.monotonic() + timeout
    while True:
        listed = set(admin.describe_acls(everything, request_timeout=timeout).result(timeout=timeout))
        missing = wanted - listed
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"{len(missing)} ACLs not in effect after {timeout:.0f} s")
        time.sleep(0.1)  # ACLs have no change notification to wait on
