"""Which librdkafka errors mean "Kafka refuses who we are", and what the worker says about them."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from workers.config.settings import KafkaSettings
from workers.kafka.refusals import KafkaRefused, refusal

KAFKA = KafkaSettings(
    bootstrap_servers="127.0.0.1:19094",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="ontime-infer",
    sasl_password="hunter2-secret",
)


def test_wrong_password_names_the_user_and_the_settings_to_check() -> None:
    err = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials")
    refused = refusal(err, KAFKA)
    assert isinstance(refused, KafkaRefused)
    text = str(refused)
    assert text.startswith("authentication failed")
    assert "User:ontime-infer" in text and "SCRAM-SHA-512" in text and "SASL_PASSWORD" in text
    assert "hunter2-secret" not in text


def test_untrusted_broker_certificate_says_so() -> None:
    err = KafkaError(KafkaError._SSL, "SSL handshake failed: certificate verify failed: unable to get issuer")
    text = str(refusal(err, KAFKA))
    assert "TLS handshake" in text and "untrusted CA" in text and "SSL_CA_LOCATION" in text
    assert "hostname verification" in text  # OpenSSL's message does not tell the two apart


@pytest.mark.parametrize(
    ("code", "what"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "topic"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "consumer group"),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, "cluster"),
        (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional id"),
    ],
)
def test_missing_acls_name_the_resource_kind(code: int, what: str) -> None:
    text = str(refusal(KafkaError(code), KAFKA))
    assert text.startswith("not authorized") and what in text and "User:ontime-infer" in text


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT])
def test_transient_errors_are_not_refusals(code: int) -> None:
    assert refusal(KafkaError(code), KAFKA) is None
