"""Secrets from settings: a `SecretStr` given inline, or a file a Secret is mounted as.

Files are read when a client is configured, not when settings load, so a rotated Secret is
picked up by the next process start without touching the environment. Only librdkafka ever sees
the plain text; everything that prints settings sees `SecretStr`'s `**********`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from workers.errors import ConfigError

MASK = "**********"
# librdkafka keys whose values are secrets: they may not travel through `kafka.extra`
# (a plain dict that is printed as it is), only through the SecretStr fields.
SECRET_KEYS = frozenset(
    {
        "sasl.password",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
    }
)


def read_secret(value: SecretStr | None, path: Path | None, field: str) -> str | None:
    """The secret's text from `value` or from the file at `path` (one trailing newline dropped)."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"kafka.{field}_file: cannot read {path} ({exc.strerror})") from None
    text = text[:-1] if text.endswith("\n") else text
    if not text:
        raise ConfigError(f"kafka.{field}_file: {path} is empty")
    return text


def redact(value: object) -> object:
    """`value` with every secret-looking entry masked, for error messages that echo input."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_name(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def is_secret_name(name: str) -> bool:
    """True for field or key names whose values are secrets (password files are only paths)."""
    lowered = name.lower()
    return name in SECRET_KEYS or ("password" in lowered and not lowered.endswith("_file"))
