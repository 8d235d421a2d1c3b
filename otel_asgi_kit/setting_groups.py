"""Groups of settings declared together: per-signal OTLP overrides, batch limits, the spool.

Each field is declared once with ``setting`` (``declaring``); ``settings.Settings``
holds one instance per group (``group(cls, **template params)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_asgi_kit import parsers as p
from otel_asgi_kit.declaring import setting


@dataclass(frozen=True)
class OtlpTarget:
    """Where and how one signal is exported over OTLP."""

    endpoint: str
    protocol: str
    headers: Mapping[str, str] = field(repr=False)
    timeout_s: float
    compression: str


@dataclass(frozen=True)
class OtlpOverrides:
    endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT", "", p.parse_url, "Full URL for {signal}.", optional=True
    )
    protocol: str | None = setting(
        "OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL",
        "",
        p.one_of("http/protobuf", "grpc"),
        "OTLP transport for {signal}.",
        optional=True,
    )
    headers: dict[str, str] | None = setting(
        "OTEL_EXPORTER_OTLP_{SIGNAL}_HEADERS",
        "",
        p.parse_key_values,
        "Headers for {signal} (secret).",
        secret=True,
        optional=True,
    )
    timeout_ms: int | None = setting(
        "OTEL_EXPORTER_OTLP_{SIGNAL}_TIMEOUT", "", p.int_between(1, 600_000), "Timeout for {signal}, ms.", optional=True
    )
    compression: str | None = setting(
        "OTEL_EXPORTER_OTLP_{SIGNAL}_COMPRESSION",
        "",
        p.one_of("none", "gzip"),
        "Compression for {signal}.",
        optional=True,
    )


@dataclass(frozen=True)
class BatchLimits:
    schedule_delay_ms: int = setting(
        "{prefix}_SCHEDULE_DELAY", "{delay}", p.int_between(1, 600_000), "{what}: ms between exports."
    )
    export_timeout_ms: int = setting(
        "{prefix}_EXPORT_TIMEOUT", "30000", p.int_between(1, 600_000), "{what}: export timeout, ms."
    )
    max_queue_size: int = setting(
        "{prefix}_MAX_QUEUE_SIZE", "2048", p.int_between(1, 10_000_000), "{what}: queue bound (drops past it)."
    )
    max_export_batch_size: int = setting(
        "{prefix}_MAX_EXPORT_BATCH_SIZE", "512", p.int_between(1, 10_000_000), "{what}: records per export."
    )


def _megabytes(low: int, high: int) -> Any:
    whole = p.int_between(low, high)

    def parse(text: str) -> int:
        return whole(text) * 1_000_000

    return parse


@dataclass(frozen=True)
class SpoolSettings:
    enabled: bool = setting(
        "OTEL_ASGI_KIT_SPOOL",
        "true",
        p.parse_bool,
        "While the collector is unreachable, keep encoded spans and log records in a bounded spool on disk and "
        "send them, oldest first, when it answers again (docs/spool.md); false: drop them as the SDK does.",
        kit_default=True,
    )
    directory: str | None = setting(
        "OTEL_ASGI_KIT_SPOOL_DIR",
        "",
        p.parse_text,
        "Spool directory kept across restarts (a volume): the next process sends what this one could not; "
        "default: a per-process temp dir, removed at exit.",
        kit_default=True,
        optional=True,
    )
    max_bytes: int = setting(
        "OTEL_ASGI_KIT_SPOOL_MAX_SIZE",
        "256",
        _megabytes(1, 1_000_000),
        "MB of spool per worker process (spans and logs together); past it the oldest are dropped and counted.",
        kit_default=True,
    )
    max_age_s: float = setting(
        "OTEL_ASGI_KIT_SPOOL_MAX_AGE",
        "86400",
        p.int_between(1, 31_536_000),
        "Seconds a spooled request may wait; older ones are dropped and counted.",
        kit_default=True,
    )
    replay_rate: float = setting(
        "OTEL_ASGI_KIT_SPOOL_REPLAY_RATE",
        "20",
        p.int_between(1, 10_000),
        "Spooled OTLP requests sent per second per signal once the collector answers (each up to a batch).",
        kit_default=True,
    )
