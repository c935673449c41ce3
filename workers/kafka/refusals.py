"""Kafka saying "no" to who we are: wrong password, untrusted certificate, missing ACL.

librdkafka treats these as retriable and would reconnect forever, logging the same line each
time; for a worker they never heal without an operator, so `refusal()` turns them into one
`KafkaRefused` that names the cause and the setting to check, and the worker stops on it.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from workers.config.settings import KafkaSettings
from workers.errors import BrokerError


class KafkaRefused(BrokerError):
    """The broker refused our credentials, our TLS handshake, or an operation (ACLs)."""


_AUTHORIZATION = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "consumer group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
}
_AUTHENTICATION = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.UNSUPPORTED_SASL_MECHANISM,
    KafkaError.ILLEGAL_SASL_STATE,
}


def refusal(err: KafkaError, kafka: KafkaSettings) -> KafkaRefused | None:
    """A `KafkaRefused` explaining `err` if it is an authentication, TLS or ACL refusal, else None."""
    code = err.code()
    said = err.str()
    who = f"User:{kafka.sasl_username}" if kafka.sasl_username else "this client"
    if code in _AUTHENTICATION:
        return KafkaRefused(
            f"authentication failed: Kafka at {kafka.bootstrap_servers} refused {who} "
            f"({kafka.sasl_mechanism or 'no SASL mechanism'}); check ONTIME_KAFKA__SASL_USERNAME and "
            f"ONTIME_KAFKA__SASL_PASSWORD(_FILE). librdkafka: {said}"
        )
    if code == KafkaError._SSL:
        return KafkaRefused(
            f"TLS handshake with {kafka.bootstrap_servers} failed: {_tls_hint(said)}; check "
            f"ONTIME_KAFKA__SSL_CA_LOCATION ({kafka.ssl_ca_location or 'system CAs'}), the host names "
            f"in ONTIME_KAFKA__BOOTSTRAP_SERVERS and the client certificate/key. librdkafka: {said}"
        )
    if code in _AUTHORIZATION:
        return KafkaRefused(
            f"not authorized: {who} may not use this {_AUTHORIZATION[code]} (missing ACL; see "
            f"docs/security.md for the grants each principal needs). librdkafka: {said}"
        )
    return None


def _tls_hint(said: str) -> str:
    lowered = said.lower()
    if "hostname" in lowered or "ip address mismatch" in lowered:
        return "the broker's certificate does not name the host we connected to (hostname verification)"
    if "certificate verify failed" in lowered or "could not be verified" in lowered:
        # OpenSSL says the same for both causes here, so name both.
        return (
            "the broker's certificate could not be verified: it is not signed by a CA we trust "
            "(untrusted CA certificate), or it does not name the host we connected to "
            "(hostname verification)"
        )
    if "alert" in lowered or "certificate required" in lowered:
        return "the broker rejected our client certificate"
    return "the TLS connection could not be set up"
