"""Settings: defaults < pipeline YAML < `ONTIME_*` environment (``__`` nests) < CLI flags.

Environment beats the YAML so an SRE can override a shipped pipeline file from a deployment's
environment (a Helm values file, a compose `environment:` block) without rebuilding the image;
CLI flags beat both for one-off runs. Invalid values fail at start with a `ConfigError` that names the field.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from workers.config.kafka_security import check_security, security_config
from workers.config.secrets import MASK, is_secret_name, redact
from workers.config.spec import MODELS_DIR, PipelineSpec, pipeline_file
from workers.errors import ConfigError

_yaml_data: ContextVar[dict[str, Any] | None] = ContextVar("_yaml_data", default=None)


class KafkaSettings(BaseModel):
    """How to reach Kafka; `extra` is the escape hatch for any raw librdkafka key.

    Security (docs/security.md): TLS with a CA, an optional client certificate and hostname
    verification, and SASL (SCRAM-SHA-512 end to end). Passwords are `SecretStr`, given inline
    (`ONTIME_KAFKA__SASL_PASSWORD`) or as a mounted file (`..._FILE`), and never printed.
    """

    model_config = ConfigDict(extra="forbid")
    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = None
    ssl_endpoint_identification_algorithm: Literal["https", "none"] = Field(
        "https",
        description="'none' turns off broker hostname verification: UNSAFE (anyone with a "
        "certificate from the same CA can impersonate the broker)",
    )
    group_protocol: Literal["classic", "consumer"] = "classic"
    # Static membership (KIP-345): a restarted consumer with the same id takes its partitions back
    # without a rebalance. One id per replica (the chart uses the pod name); unset: dynamic member.
    group_instance_id: str | None = Field(None, min_length=1, max_length=249)
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator(
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "sasl_password_file",
        "ssl_ca_location",
        "ssl_certificate_location",
        "ssl_key_location",
        "ssl_key_password",
        "ssl_key_password_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A chart or compose file often renders an unused secret as an empty variable.
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        check_security(self)
        return self

    def as_librdkafka_dict(self) -> dict[str, str]:
        """The librdkafka keys of every client ontime creates: bootstrap, `extra`, then security."""
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        conf.update(self.extra)
        conf.update(security_config(self))  # last: `extra` cannot weaken TLS or SASL
        return conf


class WorkerSettings(BaseModel):
    """Knobs of one worker process, shared by every stage it runs."""

    model_config = ConfigDict(extra="forbid")
    poll_timeout_ms: int = Field(100, ge=1, le=10_000)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    # A killed replica's partitions move after this (10 s, not librdkafka's 45 s: a stage's frames
    # have budgets of seconds); static membership still rides out a restart in place within it.
    session_timeout_ms: int = Field(10_000, ge=6_000, description="stage consumers (docs/reliability.md)")
    heartbeat_interval_ms: int = Field(3_000, ge=100, description="capped at a third of session_timeout_ms")
    flush_timeout_s: float = Field(30.0, gt=0)
    transaction_timeout_ms: int = Field(
        10_000, ge=1_000, le=900_000, description="exactly-once: how long an abandoned transaction blocks"
    )
    metrics_port: int | None = Field(None, ge=0, le=65535, description="0 picks a free port; None: off")
    log_json: bool = False
    log_level: str = "INFO"


class AggregateSettings(BaseModel):
    """`ontime aggregate` (faust-streaming): where faust keeps its local files.

    The table store is `memory://` (rebuilt from the changelog), but faust still creates a data
    directory per app; by default it created `<app id>-data` in the working directory.
    """

    model_config = ConfigDict(extra="forbid")
    data_dir: Path = Field(
        Path(".ontime") / "aggregate",
        description="faust's datadir root; each app gets `<data_dir>/<app id>` "
        "(a relative path is under the working directory)",
    )


class OntimeSettings(BaseSettings):
    """Everything a worker or CLI verb needs, from all configuration sources merged."""

    model_config = SettingsConfigDict(env_prefix="ONTIME_", env_nested_delimiter="__", extra="forbid")
    pipeline_file: Path | None = None
    models_dir: Path = Field(MODELS_DIR, description="root of <pipeline>/<variant>/{model.onnx,card.json}")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    aggregate: AggregateSettings = Field(default_factory=AggregateSettings)
    pipeline: PipelineSpec
    observability: ObservabilitySettings = Field(default_factory=lambda: ObservabilitySettings())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)


class _YamlSource(PydanticBaseSettingsSource):
    """Feeds the pipeline YAML (read by `load_settings`) in as the `pipeline` field."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get() or {})


def load_settings(pipeline: str | None = None, overrides: dict[str, Any] | None = None) -> OntimeSettings:
    """Merge every source; `pipeline` is a bundled pipeline name or a path to its YAML file."""
    name = pipeline or os.environ.get("ONTIME_PIPELINE_FILE") or "acoustic"
    path = pipeline_file(name)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"pipeline file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"pipeline file {path} must hold a mapping")
    token = _yaml_data.set({"pipeline": data})
    try:
        init = {"pipeline_file": path, **(overrides or {})}
        return OntimeSettings(**init)
    except ValidationError as exc:
        raise ConfigError(describe(exc, str(path))) from None
    finally:
        _yaml_data.reset(token)


def merge_overrides(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Deep-merge nested override dicts in place, so one override never replaces its siblings."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_overrides(into[key], value)
        else:
            into[key] = value


def describe(exc: ValidationError, source: str) -> str:
    """One line per invalid field, each starting with its dotted name."""
    lines = [f"invalid configuration (pipeline file {source}, ONTIME_* environment, CLI flags):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        # A model-level error echoes the whole block it checked, secrets included: mask them.
        secret = any(is_secret_name(str(p)) for p in err["loc"])
        shown = MASK if secret else redact(err.get("input"))
        lines.append(f"  {loc}: {err['msg']} (got {shown!r})")
    return "\n".join(lines)


class ObservabilitySettings(BaseModel):
    """Tracing switch and health-probe thresholds; exporters themselves read the standard `OTEL_*`."""

    model_config = ConfigDict(extra="forbid")
    tracing: bool | None = Field(
        None, description="None: on when OTEL_TRACES_EXPORTER (or an OTLP endpoint) is set; True/False: force"
    )
    liveness_timeout_s: float = Field(
        30.0, gt=0, description="/livez fails after the poll loop stalls this long"
    )
    drift: bool = Field(
        True, description="export ontime_drift_* for stages whose model card holds a drift reference"
    )
    drift_window_frames: int | None = Field(
        None,
        gt=0,
        description="frames in the drift window; None: the card's (what its thresholds were chosen for)",
    )


OntimeSettings.model_rebuild()  # resolve the forward reference to ObservabilitySettings above

_ENV = OntimeSettings.model_config
BOOTSTRAP_ENV = f"{_ENV.get('env_prefix')}KAFKA{_ENV.get('env_nested_delimiter')}BOOTSTRAP_SERVERS"
"""`ONTIME_KAFKA__BOOTSTRAP_SERVERS`: names an existing cluster, so no local broker is started."""


def bootstrap_from_env() -> str | None:
    """The bootstrap servers of an existing cluster named by ONTIME_KAFKA__BOOTSTRAP_SERVERS, if any."""
    return os.environ.get(BOOTSTRAP_ENV, "").strip() or None
