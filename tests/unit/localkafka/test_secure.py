"""The secure local broker's files: a CA that really signs, keys kept private, listener config."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from workers.config.settings import KafkaSettings
from workers.kafka.acls import principals
from workers.localkafka.broker import LocalBroker, default_state_dir
from workers.localkafka.config import broker_properties
from workers.localkafka.secure import ADMIN, Credentials, secure_properties, users


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    made = Credentials(tmp_path_factory.mktemp("creds"))
    made.ensure()
    return made


def _certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_broker_certificate_is_signed_by_the_ca_and_names_the_loopback_host(creds: Credentials) -> None:
    (ca,) = _certs(creds.ca_pem)
    broker = _certs(creds.keystore)[0]
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_every_user_has_a_password_and_a_ca_signed_client_certificate(creds: Credentials) -> None:
    (ca,) = _certs(creds.ca_pem)
    assert set(users()) == {ADMIN, *principals()}
    for user in users():
        folder = creds.user_dir(user)
        leaf = _certs(folder / "client.pem")[0]
        leaf.verify_directly_issued_by(ca)
        assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == user
        assert len(creds.password(user)) >= 24
        key_password = (folder / "key-password").read_text().strip().encode()
        with pytest.raises(TypeError):  # encrypted: no password, no key
            serialization.load_pem_private_key((folder / "client.key").read_bytes(), password=None)
        key = serialization.load_pem_private_key((folder / "client.key").read_bytes(), password=key_password)
        assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_secrets_are_readable_by_their_owner_only(creds: Credentials) -> None:
    secret_files = [creds.ca_key, creds.keystore]
    for user in users():
        folder = creds.user_dir(user)
        secret_files += [folder / "password", folder / "client.key", folder / "key-password"]
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_env_file_logs_in_as_its_user_with_secrets_by_file_only(creds: Credentials) -> None:
    creds.write_env_files("127.0.0.1:19094")
    text = creds.env_file("ontime-device").read_text()
    fields = dict(line.split("=", 1) for line in text.splitlines())
    assert fields["ONTIME_KAFKA__SASL_USERNAME"] == "ontime-device"
    assert creds.password("ontime-device") not in text  # the file holds a path, not the secret
    kafka = KafkaSettings.model_validate(
        {k.removeprefix("ONTIME_KAFKA__").lower(): v for k, v in fields.items()}
    )
    assert kafka.as_librdkafka_dict()["sasl.password"] == creds.password("ontime-device")


def test_scram_users_are_seeded_at_format_time(creds: Credentials) -> None:
    args = creds.scram_format_args()
    assert args[::2] == ["--add-scram"] * len(users())
    assert f"SCRAM-SHA-512=[name={ADMIN},password={creds.password(ADMIN)}]" in args


def test_secure_listener_replaces_plaintext_and_acls_are_enforced(creds: Credentials, tmp_path: Path) -> None:
    props = broker_properties(29094, 29095, tmp_path)
    props.update(secure_properties(29094, 29095, creds))
    assert "PLAINTEXT" not in props["listeners"]
    assert props["listener.security.protocol.map"] == "SECURE:SASL_SSL,CONTROLLER:SSL"
    assert props["inter.broker.listener.name"] == "SECURE"
    assert props["listener.name.secure.ssl.client.auth"] == "required"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:ontime-broker"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"


def test_rotation_gives_new_passwords_and_certificates_from_the_same_ca(tmp_path: Path) -> None:
    creds = Credentials(tmp_path / "credentials")
    creds.ensure()
    old_cert = (creds.user_dir("ontime-infer") / "client.pem").read_bytes()
    old_password = creds.password("ontime-infer")
    creds.new_password("ontime-infer")
    assert creds.password("ontime-infer") == old_password  # not until the broker took it
    creds.commit_password("ontime-infer")
    assert creds.password("ontime-infer") != old_password
    creds.new_password("someone-new")
    creds.commit_password("someone-new")
    assert "someone-new" in creds.known_users()
    creds.reissue_certificates()
    new_cert = creds.user_dir("ontime-infer") / "client.pem"
    assert new_cert.read_bytes() != old_cert
    _certs(new_cert)[0].verify_directly_issued_by(_certs(creds.ca_pem)[0])


def test_secure_broker_keeps_its_own_state_dir_and_is_recognised_later(tmp_path: Path) -> None:
    assert default_state_dir(secure=True).name == "broker-secure"
    Credentials(tmp_path / "credentials").ensure()
    assert LocalBroker(tmp_path).secure  # `broker down` without --secure still knows
    assert not LocalBroker(tmp_path / "plain").secure


def test_cli_has_secure_up_and_rotate() -> None:
    import argparse

    from workers.localkafka.cli import register_cli

    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    up = parser.parse_args(["broker", "up", "--secure", "--exactly-once"])
    assert up.secure and up.exactly_once
    rotate = parser.parse_args(["broker", "rotate", "--secure", "--user", "ontime-infer"])
    assert rotate.user == "ontime-infer" and not rotate.certs
    assert parser.parse_args(["broker", "down", "--secure"]).secure


def test_tool_output_quoted_in_errors_has_passwords_masked(creds: Credentials) -> None:
    echoed = " ".join(creds.scram_format_args())
    masked = creds.redact(echoed)
    assert all(creds.password(u) not in masked for u in users())
    assert "name=ontime-device" in masked
