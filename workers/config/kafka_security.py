"""TLS and SASL settings → librdkafka keys, checked for consistency before any client exists.

A mistake here (a password without SASL, a certificate without its key) would otherwise show up
as a silent plaintext connection or a handshake failure far from its cause, so it fails at start
and names the field. Used only through `KafkaSettings`, which every ontime client is built from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from workers.config.secrets import SECRET_KEYS, read_secret
from workers.errors import ConfigError


class KafkaSettings(Protocol):
    """The fields of `workers.config.settings.KafkaSettings` this module reads (a Protocol, so the
    settings module can import this one without a cycle)."""

    @property
    def security_protocol(self) -> str: ...
    @property
    def sasl_mechanism(self) -> str | None: ...
    @property
    def sasl_username(self) -> str | None: ...
    @property
    def sasl_password(self) -> SecretStr | None: ...
    @property
    def sasl_password_file(self) -> Path | None: ...
    @property
    def ssl_ca_location(self) -> str | None: ...
    @property
    def ssl_certificate_location(self) -> str | None: ...
    @property
    def ssl_key_location(self) -> str | None: ...
    @property
    def ssl_key_password(self) -> SecretStr | None: ...
    @property
    def ssl_key_password_file(self) -> Path | None: ...
    @property
    def ssl_endpoint_identification_algorithm(self) -> str: ...
    @property
    def extra(self) -> dict[str, str]: ...


# librdkafka keys owned by a typed field; `kafka.extra` may not set them behind its back.
_FIELD_OF_KEY = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "ssl.ca.location": "ssl_ca_location",
    "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location",
    "ssl.endpoint.identification.algorithm": "ssl_endpoint_identification_algorithm",
}


def uses_sasl(protocol: str) -> bool:
    return protocol.startswith("SASL_")


def uses_tls(protocol: str) -> bool:
    return protocol.endswith("SSL")


def check_security(k: KafkaSettings) -> None:
    """Raise ValueError naming the field when the security settings contradict each other."""
    for key in k.extra:
        if key in SECRET_KEYS:
            raise ValueError(f"extra.{key}: a secret; use the SecretStr fields (sasl_password, ...)")
        if key in _FIELD_OF_KEY:
            raise ValueError(f"extra.{key}: set kafka.{_FIELD_OF_KEY[key]} instead")
    _one_of(k.sasl_password is not None, k.sasl_password_file is not None, "sasl_password")
    _one_of(k.ssl_key_password is not None, k.ssl_key_password_file is not None, "ssl_key_password")
    sasl_given = [
        name
        for name, value in (
            ("sasl_mechanism", k.sasl_mechanism),
            ("sasl_username", k.sasl_username),
            ("sasl_password", k.sasl_password),
            ("sasl_password_file", k.sasl_password_file),
        )
        if value is not None
    ]
    if uses_sasl(k.security_protocol):
        missing = [
            name
            for name, ok in (
                ("sasl_mechanism", k.sasl_mechanism is not None),
                ("sasl_username", bool(k.sasl_username)),
                ("sasl_password or sasl_password_file", bool(set(sasl_given) & _PASSWORDS)),
            )
            if not ok
        ]
        if missing:
            raise ValueError(f"security_protocol {k.security_protocol} needs {', '.join(missing)}")
    elif sasl_given:
        raise ValueError(
            f"{sasl_given[0]} is set but security_protocol is {k.security_protocol}: "
            "use SASL_SSL (or SASL_PLAINTEXT) so the credentials are used"
        )
    tls_given = [
        name
        for name, value in (
            ("ssl_ca_location", k.ssl_ca_location),
            ("ssl_certificate_location", k.ssl_certificate_location),
            ("ssl_key_location", k.ssl_key_location),
            ("ssl_key_password", k.ssl_key_password),
            ("ssl_key_password_file", k.ssl_key_password_file),
        )
        if value is not None
    ]
    if tls_given and not uses_tls(k.security_protocol):
        raise ValueError(
            f"{tls_given[0]} is set but security_protocol is {k.security_protocol}: "
            "use SSL or SASL_SSL so the connection is encrypted"
        )
    if (k.ssl_certificate_location is None) != (k.ssl_key_location is None):
        raise ValueError("ssl_certificate_location and ssl_key_location go together (a client certificate)")
    if k.ssl_key_location is None and {"ssl_key_password", "ssl_key_password_file"} & set(tls_given):
        raise ValueError("ssl_key_password is set without ssl_key_location")


_PASSWORDS = {"sasl_password", "sasl_password_file"}


def security_config(k: KafkaSettings) -> dict[str, str]:
    """librdkafka's security keys for `k`; reads password files now and checks that files exist."""
    conf: dict[str, str] = {"security.protocol": k.security_protocol}
    if uses_sasl(k.security_protocol):
        assert k.sasl_mechanism is not None and k.sasl_username is not None  # check_security
        conf["sasl.mechanism"] = k.sasl_mechanism
        conf["sasl.username"] = k.sasl_username
        password = read_secret(k.sasl_password, k.sasl_password_file, "sasl_password")
        assert password is not None
        conf["sasl.password"] = password
    if uses_tls(k.security_protocol):
        conf["ssl.endpoint.identification.algorithm"] = k.ssl_endpoint_identification_algorithm
        for key, field, value in (
            ("ssl.ca.location", "ssl_ca_location", k.ssl_ca_location),
            ("ssl.certificate.location", "ssl_certificate_location", k.ssl_certificate_location),
            ("ssl.key.location", "ssl_key_location", k.ssl_key_location),
        ):
            if value is not None:
                conf[key] = _readable_file(value, field)
        key_password = read_secret(k.ssl_key_password, k.ssl_key_password_file, "ssl_key_password")
        if key_password is not None:
            conf["ssl.key.password"] = key_password
    return conf


def _one_of(inline: bool, from_file: bool, field: str) -> None:
    if inline and from_file:
        raise ValueError(f"{field} and {field}_file are both set: give one")


def _readable_file(value: str, field: str) -> str:
    if field == "ssl_ca_location" and value == "probe":  # librdkafka: the system's CA bundle
        return value
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"kafka.{field}: {value} is not a readable file")
    return value
