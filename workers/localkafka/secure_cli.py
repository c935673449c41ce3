"""The secure broker's CLI parts: ACLs on `broker up --secure`, what to tell the user, `rotate`.

Kept apart from workers/localkafka/cli.py so the plaintext verbs read as before.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from workers.errors import BrokerError
from workers.kafka.acls import DEVICE, DOWNSTREAM, Grant, apply_grants, pipeline_grants, stage_principal
from workers.localkafka.broker import LocalBroker
from workers.localkafka.secure import ADMIN, MECHANISM

SCRAM_ITERATIONS = 8192


def _admin(broker: LocalBroker) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({**broker.client_config(ADMIN), "log_level": 2})


def _pipeline(args: argparse.Namespace) -> Any:
    load = getattr(args, "load_settings", None)
    if load is None:  # `python -m workers.localkafka` has no global flags
        from workers.config.settings import load_settings

        return load_settings().pipeline
    return load().pipeline


def apply_pipeline_acls(
    args: argparse.Namespace, broker: LocalBroker, exactly_once: bool | None
) -> list[Grant]:
    """Create the least-privilege ACLs of the selected pipeline (idempotent); return them."""
    grants = pipeline_grants(_pipeline(args), exactly_once=exactly_once)
    apply_grants(_admin(broker), grants)
    return grants


def describe_credentials(broker: LocalBroker, bootstrap: str, grants: list[Grant]) -> str:
    """Where the CA and each principal's credentials are, the ACLs, and how to use them."""
    creds = broker.credentials
    assert creds is not None
    state = broker.state()
    controller = f"127.0.0.1:{state.controller_port}" if state else "its controller port"
    lines = [
        f"secure listener: {bootstrap} SASL_SSL (TLS 1.2+, client certificate required, {MECHANISM})",
        f"controller listener: {controller} TLS with client certificates, loopback only",
        f"CA certificate (ONTIME_KAFKA__SSL_CA_LOCATION): {creds.ca_pem}",
        f"CA key (signs certificates; keep it here): {creds.ca_key}",
        "principals (password, client.pem, client.key, key-password, kafka.env in each folder):",
    ]
    roles = {
        ADMIN: "super user: topics, ACLs, users",
        DEVICE: "writes the raw topic only",
        DOWNSTREAM: "reads the results topic only",
    }
    for user in creds.known_users():
        role = roles.get(user, "a stage: its input, group and outputs" if user.startswith("ontime-") else "")
        lines.append(f"  {user:18} {creds.user_dir(user)}  {role}")
    lines.append(f"ACLs ({len(grants)}):")
    lines += [f"  {g.row()}" for g in grants]
    env = creds.env_file
    lines += [
        "use (each shell logs in as one principal; secrets stay in the files, not the environment):",
        f"  set -a; . {env(ADMIN)}; set +a; ontime topics create",
        f"  set -a; . {env(stage_principal('preprocess'))}; set +a; ontime worker --stage preprocess",
        f"  set -a; . {env(DEVICE)}; set +a; ontime devices simulate",
        "rotate: ontime broker rotate --secure --user NAME | --certs   (docs/security.md)",
    ]
    return "\n".join(lines)


def add_rotate(verbs: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    rotate = verbs.add_parser("rotate", help="new SCRAM password for a user, or new certificates (--secure)")
    common(rotate)
    what = rotate.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", help="new password for this user (created if new); others are untouched")
    what.add_argument("--certs", action="store_true", help="new broker and client certificates, same CA")
    rotate.set_defaults(func=_cmd_rotate)


def rotate_password(broker: LocalBroker, user: str) -> str:
    """Give `user` a new SCRAM password on the running broker, then in its password file."""
    from confluent_kafka.admin._scram import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    creds = broker.credentials
    if creds is None or broker.bootstrap is None:
        raise BrokerError("rotate needs a running secure broker (ontime broker up --secure)")
    password = creds.new_password(user)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upsert = UserScramCredentialUpsertion(user, info, password.encode())
    admin = _admin(broker)  # kept referenced: a collected client cancels its pending requests
    for future in admin.alter_user_scram_credentials([upsert]).values():
        try:
            future.result(timeout=30)
        except Exception as exc:  # KafkaException: the old password stays valid
            raise BrokerError(f"broker refused the new password for {user}: {exc}") from None
    creds.commit_password(user)
    creds.write_env_files(broker.bootstrap)
    return str(creds.password_file(user))


def _cmd_rotate(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.state_dir, secure=True)
    creds = broker.credentials
    assert creds is not None
    try:
        if args.user:
            path = rotate_password(broker, args.user)
            print(f"{args.user}: new password in {path}; restart its clients (they read it at start)")
            return 0
        if not creds.exists():
            raise BrokerError(f"no credentials in {creds.root}; run ontime broker up --secure first")
        creds.reissue_certificates()
    except BrokerError as exc:
        print(f"rotate failed: {exc}")
        return 1
    print(f"new certificates under {creds.root} (same CA {creds.ca_pem});")
    print("restart the broker (ontime broker down --secure && ontime broker up --secure), then the clients")
    return 0
