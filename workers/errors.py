"""Every error ontime raises on purpose, as one tree a user can catch from.

    OntimeError
    ├── ConfigError          invalid settings or pipeline YAML (names the field)
    ├── ModelError           a model file is missing, or its sha256 differs from its card
    ├── BrokerError          the local broker could not be started, reached or stopped
    │   └── KafkaRefused     (workers.kafka.refusals) wrong credentials, untrusted TLS, missing ACL
    ├── DeliveryFailed       (workers.loop.worker) a produced record was not acknowledged: the worker stops
    ├── Abandoned            (workers.loop.worker) a second stop signal cut the batch in hand short
    └── PoisonMessage        a record that can never be processed: goes to P.dlq, never retried
        ├── BadContentType   header missing or not what the stage accepts
        ├── BadHeader        a header the pipeline reads is not UTF-8, too long, or malformed
        ├── BadShape         payload size (or image size, channels) does not match what is declared
        ├── BadEncoding      payload is not a valid instance of its content type (corrupt, truncated)
        ├── BadDtype         a tensor's dtype is not what the stage's model takes
        └── BadSamples       NaN/Inf or otherwise invalid values

`PoisonMessage.reason` is the short machine-readable code written to `ontime-error-reason`.
"""

from __future__ import annotations

from workers.messages import reasons


class OntimeError(Exception):
    """Base of every error ontime raises on purpose."""


class ConfigError(OntimeError):
    """Settings or pipeline YAML are invalid; the message names the field."""


class ModelError(OntimeError):
    """A model file cannot be used: missing, unreadable, or its checksum is wrong."""


class BrokerError(OntimeError):
    """The Kafka broker could not be started, reached or stopped."""


class PoisonMessage(OntimeError):
    """A record that can never be processed; it is routed to the DLQ with `reason`."""

    reason: str = reasons.POISON

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadContentType(PoisonMessage):
    reason: str = reasons.BAD_CONTENT_TYPE


class BadHeader(PoisonMessage):
    reason: str = reasons.BAD_HEADER


class BadShape(PoisonMessage):
    reason: str = reasons.BAD_SHAPE


class BadEncoding(PoisonMessage):
    reason: str = reasons.BAD_ENCODING


class BadDtype(PoisonMessage):
    reason: str = reasons.BAD_DTYPE


class BadSamples(PoisonMessage):
    reason: str = reasons.BAD_SAMPLES
