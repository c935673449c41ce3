"""TLS and SASL settings: what librdkafka receives, what a mistake says, and what is never printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from pydantic import SecretStr

from workers.config.settings import KafkaSettings, load_settings
from workers.errors import ConfigError
from workers.kafka.clients import consumer_config, producer_config
from workers.localkafka.secure import Credentials

PASSWORD = "s3cret-Passw0rd-for-tests"


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """Real certificates and keys from the local CA (the same code `broker up --secure` runs)."""
    made = Credentials(tmp_path_factory.mktemp("creds"))
    made.ensure()
    return made


def _env(monkeypatch: pytest.MonkeyPatch, creds: Credentials, user: str = "ontime-infer") -> None:
    for key, value in creds.settings(user, "127.0.0.1:1").items():
        monkeypatch.setenv(f"ONTIME_KAFKA__{key.upper()}", value)


def test_env_names_of_the_deploy_contract_reach_librdkafka(
    monkeypatch: pytest.MonkeyPatch, creds: Credentials
) -> None:
    _env(monkeypatch, creds)
    conf = load_settings("acoustic").kafka.as_librdkafka_dict()
    folder = creds.user_dir("ontime-infer")
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "ontime-infer"
    assert conf["sasl.password"] == creds.password("ontime-infer")
    assert conf["ssl.ca.location"] == str(creds.ca_pem)
    assert conf["ssl.certificate.location"] == str(folder / "client.pem")
    assert conf["ssl.key.location"] == str(folder / "client.key")
    assert conf["ssl.key.password"] == (folder / "key-password").read_text().strip()
    assert conf["ssl.endpoint.identification.algorithm"] == "https"  # on unless turned off


def test_inline_secrets_from_env_and_hostname_check_off(
    monkeypatch: pytest.MonkeyPatch, creds: Credentials
) -> None:
    _env(monkeypatch, creds)
    monkeypatch.delenv("ONTIME_KAFKA__SASL_PASSWORD_FILE")
    monkeypatch.delenv("ONTIME_KAFKA__SSL_KEY_PASSWORD_FILE")
    monkeypatch.setenv("ONTIME_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("ONTIME_KAFKA__SSL_KEY_PASSWORD", "key-pw")
    monkeypatch.setenv("ONTIME_KAFKA__SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "none")
    settings = load_settings("acoustic")
    conf = settings.kafka.as_librdkafka_dict()
    assert conf["sasl.password"] == PASSWORD
    assert conf["ssl.key.password"] == "key-pw"
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.kafka)):
        assert PASSWORD not in text
        assert "key-pw" not in text


def test_every_client_config_carries_the_security_keys(creds: Credentials) -> None:
    settings = load_settings("acoustic", {"kafka": creds.settings("ontime-infer", "127.0.0.1:1")})
    for conf in (consumer_config(settings, "infer"), producer_config(settings, "infer")):
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.password"] == creds.password("ontime-infer")


def test_librdkafka_loads_the_encrypted_client_key_with_its_password(creds: Credentials) -> None:
    """Client construction builds the TLS context: a wrong key password fails right there."""
    good = KafkaSettings.model_validate(creds.settings("ontime-infer", "127.0.0.1:1"))
    Producer(good.as_librdkafka_dict())
    Consumer({**good.as_librdkafka_dict(), "group.id": "g"}).close()
    bad = good.model_copy(update={"ssl_key_password_file": None, "ssl_key_password": SecretStr("wrong")})
    with pytest.raises(KafkaException, match=r"(?i)ssl|key"):
        Producer(bad.as_librdkafka_dict())


def test_password_file_drops_one_newline_and_an_empty_file_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    base = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"}
    kafka = KafkaSettings.model_validate({**base, "sasl_password_file": str(secret)})
    assert kafka.as_librdkafka_dict()["sasl.password"] == PASSWORD
    secret.write_text("")
    with pytest.raises(ConfigError, match=r"sasl_password_file.*empty"):
        kafka.as_librdkafka_dict()
    secret.unlink()
    with pytest.raises(ConfigError, match="sasl_password_file: cannot read"):
        kafka.as_librdkafka_dict()


def test_missing_certificate_file_names_the_field(tmp_path: Path) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_ca_location=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match=r"kafka\.ssl_ca_location"):
        kafka.as_librdkafka_dict()


@pytest.mark.parametrize(
    ("kafka", "says"),
    [
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_password": PASSWORD},
            "sasl_username",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": PASSWORD},
            "sasl_mechanism",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"},
            "sasl_password",
        ),
        ({"sasl_username": "u", "sasl_password": PASSWORD}, "security_protocol is PLAINTEXT"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": PASSWORD,
                "ssl_ca_location": "/ca.pem",
            },
            "ssl_ca_location is set",
        ),
        ({"security_protocol": "SSL", "ssl_certificate_location": "/c.pem"}, "go together"),
        ({"security_protocol": "SSL", "ssl_key_password": PASSWORD}, "without ssl_key_location"),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "u",
                "sasl_password": PASSWORD,
                "sasl_password_file": "/pw",
            },
            "both set",
        ),
        ({"extra": {"sasl.password": PASSWORD}}, "a secret"),
        ({"extra": {"ssl.endpoint.identification.algorithm": "none"}}, "kafka.ssl_endpoint_identification"),
    ],
)
def test_contradictions_fail_at_start_naming_the_field_without_echoing_secrets(
    kafka: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("acoustic", {"kafka": kafka})
    message = str(caught.value)
    assert says in message
    assert PASSWORD not in message


def test_bad_value_of_a_secret_field_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("acoustic", {"kafka": {"sasl_password": ["not", PASSWORD]}})
    assert "kafka.sasl_password" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chart renders unused secrets as empty variables: PLAINTEXT must still start."""
    for name in (
        "SASL_MECHANISM",
        "SASL_USERNAME",
        "SASL_PASSWORD",
        "SASL_PASSWORD_FILE",
        "SSL_CA_LOCATION",
        "SSL_CERTIFICATE_LOCATION",
        "SSL_KEY_LOCATION",
        "SSL_KEY_PASSWORD",
        "SSL_KEY_PASSWORD_FILE",
    ):
        monkeypatch.setenv(f"ONTIME_KAFKA__{name}", "")
    conf = load_settings("acoustic").kafka.as_librdkafka_dict()
    assert conf["security.protocol"] == "PLAINTEXT"
    assert not any(key.startswith(("sasl.", "ssl.")) for key in conf)
