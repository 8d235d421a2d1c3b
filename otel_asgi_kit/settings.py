"""Every environment variable the kit reads, declared once, parsed once into ``Settings``.

Each setting is one field of ``Settings`` (or of a group such as
``BatchLimits``) declared with ``setting(name, default, parser, doc)``
(``declaring``):
``VARS``, the loader and the README's table (``env_table``) all derive from
those declarations, so a variable cannot be documented and not read. A bad
value never stops the app: ``load_settings`` records one line naming the
variable, the value (hidden for secrets) and what was expected, and uses the
default; ``Settings.sources`` says where each value came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from otel_asgi_kit import parsers as p
from otel_asgi_kit.declaring import Reader, Source, Var, extra_patterns, group, setting, var_of, walk
from otel_asgi_kit.redaction import DEFAULT_QUERY_PARAMS
from otel_asgi_kit.setting_groups import BatchLimits, OtlpOverrides, OtlpTarget, SpoolSettings

__all__ = [
    "SIGNALS",
    "VARS",
    "BatchLimits",
    "OtlpTarget",
    "Settings",
    "Source",
    "SpoolSettings",
    "Var",
    "env_name",
    "load_settings",
]

SIGNALS = ("traces", "metrics", "logs")
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_EXCLUDED_URLS = r"^/health,^/ready,^/live,^/metrics$,^/favicon\.ico$"
DEFAULT_DURATION_BUCKETS = "0.005,0.01,0.025,0.05,0.075,0.1,0.25,0.5,0.75,1,2.5,5,7.5,10,30,60"
DEFAULT_SANITIZE_FIELDS = (
    "authorization,proxy-authorization,cookie,set-cookie,x-api-key,"
    ".*token.*,.*secret.*,.*password.*,.*session.*,.*api-key.*,.*apikey.*"
)


_SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}


@dataclass(frozen=True)
class Settings:
    # What is on, and where it goes.
    sdk_disabled: bool = setting("OTEL_SDK_DISABLED", "false", p.parse_bool, "Switch the whole kit off.")
    service_name: str = setting("OTEL_SERVICE_NAME", "unknown_service", p.parse_text, "`service.name` of every signal.")
    resource_attributes: dict[str, str] = setting(
        "OTEL_RESOURCE_ATTRIBUTES", "", p.parse_key_values, "Extra resource attributes, `k=v,k2=v2`."
    )
    traces_exporters: tuple[str, ...] = setting(
        "OTEL_TRACES_EXPORTER", "otlp", p.list_of("otlp", "console"), "Where spans go."
    )
    metrics_exporters: tuple[str, ...] = setting(
        "OTEL_METRICS_EXPORTER",
        "prometheus",
        p.list_of("prometheus", "otlp", "console"),
        "Where metrics go; `prometheus` serves them on the admin port.",
        kit_default=True,
    )
    logs_exporters: tuple[str, ...] = setting(
        "OTEL_LOGS_EXPORTER", "otlp", p.list_of("otlp", "console"), "Where log records go (OTLP)."
    )
    # OTLP: general, then per signal.
    otlp_endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        p.parse_url,
        "Collector base URL; default http://localhost:4318 (http/protobuf) or :4317 (grpc).",
        optional=True,
    )
    otlp_protocol: str = setting(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", p.one_of("http/protobuf", "grpc"), "OTLP transport."
    )
    otlp_headers: dict[str, str] = setting(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "",
        p.parse_key_values,
        "Headers sent to the collector, `k=v,...` (secret: never printed).",
        secret=True,
    )
    otlp_timeout_ms: int = setting(
        "OTEL_EXPORTER_OTLP_TIMEOUT", "10000", p.int_between(1, 600_000), "Export timeout, ms."
    )
    otlp_compression: str = setting(
        "OTEL_EXPORTER_OTLP_COMPRESSION", "none", p.one_of("none", "gzip"), "Payload compression."
    )
    traces_otlp: OtlpOverrides = group(OtlpOverrides, SIGNAL="TRACES", signal="traces")
    metrics_otlp: OtlpOverrides = group(OtlpOverrides, SIGNAL="METRICS", signal="metrics")
    logs_otlp: OtlpOverrides = group(OtlpOverrides, SIGNAL="LOGS", signal="logs")
    # Sampling and batching.
    sampler: str = setting("OTEL_TRACES_SAMPLER", "parentbased_always_on", p.one_of(*_SAMPLERS), "Sampler.")
    sampler_arg: float = setting(
        "OTEL_TRACES_SAMPLER_ARG", "1.0", p.float_between(0, 1), "Ratio for the *traceidratio samplers."
    )
    tail_sampling_ratio: float | None = setting(
        "OTEL_ASGI_KIT_TAIL_SAMPLING_RATIO",
        "",
        p.float_between(0, 1),
        "Tail sampling, decided when the request ends: export every trace with an error or a 5xx, every slow "
        "one, and this ratio of the rest (unset: export every sampled trace). Metrics and pages see all.",
        optional=True,
    )
    tail_sampling_slow_ms: int = setting(
        "OTEL_ASGI_KIT_TAIL_SAMPLING_SLOW_MS",
        "1000",
        p.int_between(1, 3_600_000),
        "With tail sampling: requests at least this slow (ms) are always exported.",
        kit_default=True,
    )
    span_batch: BatchLimits = group(BatchLimits, prefix="OTEL_BSP", what="Spans", delay="5000")
    log_batch: BatchLimits = group(BatchLimits, prefix="OTEL_BLRP", what="Log records", delay="1000")
    metric_export_interval_ms: int = setting(
        "OTEL_METRIC_EXPORT_INTERVAL", "60000", p.int_between(100, 86_400_000), "OTLP metric push interval, ms."
    )
    metric_export_timeout_ms: int = setting(
        "OTEL_METRIC_EXPORT_TIMEOUT", "30000", p.int_between(1, 600_000), "OTLP metric push timeout, ms."
    )
    # The admin port.
    admin_host: str = setting(
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        "localhost",
        p.parse_host,
        "Admin port bind address; containers need `0.0.0.0` to be scraped.",
    )
    admin_port: int = setting(
        "OTEL_EXPORTER_PROMETHEUS_PORT", "9464", p.int_between(1, 65535), "Admin port: `/metrics`, `/healthz`."
    )
    # What a request records.
    capture_request_headers: tuple[str, ...] = setting(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
        "",
        p.parse_patterns,
        "Request headers to record on the span (regexes, `.*` for all).",
    )
    capture_response_headers: tuple[str, ...] = setting(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
        "",
        p.parse_patterns,
        "Response headers to record on the span (regexes).",
    )
    sanitize_fields: tuple[str, ...] = setting(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
        "",
        extra_patterns(DEFAULT_SANITIZE_FIELDS),
        "More header names (regexes) whose values are replaced by `REDACTED`; added to the kit's list.",
    )
    excluded_urls: tuple[str, ...] = setting(
        "OTEL_PYTHON_EXCLUDED_URLS",
        DEFAULT_EXCLUDED_URLS,
        p.parse_patterns,
        "Paths (regexes, searched in the path) with no span and no metrics.",
        kit_default=True,
    )
    trace_response_header: str = setting(
        "OTEL_ASGI_KIT_TRACE_RESPONSE_HEADER",
        "traceresponse",
        p.parse_header_name,
        "Response header carrying the trace id (W3C `traceresponse`); empty to switch off.",
        kit_default=True,
        empty_ok=True,
    )
    redact_query_params: tuple[str, ...] = setting(
        "OTEL_ASGI_KIT_REDACT_QUERY_PARAMS",
        "",
        extra_patterns(DEFAULT_QUERY_PARAMS),
        "More query parameter names (regexes) whose values are replaced by `REDACTED`; added to the kit's list.",
    )
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = setting(
        "OTEL_ASGI_KIT_TRUSTED_PROXIES",
        "",
        p.parse_networks,
        "Peers (IPs/CIDRs) whose `X-Forwarded-For`/`Forwarded` give the client address; others are the client.",
    )
    duration_buckets: tuple[float, ...] = setting(
        "OTEL_ASGI_KIT_DURATION_BUCKETS",
        DEFAULT_DURATION_BUCKETS,
        p.parse_buckets,
        "Bucket bounds (seconds) of `http.server.request.duration`.",
        kit_default=True,
    )
    # Logs.
    log_format: str = setting(
        "OTEL_ASGI_KIT_LOG_FORMAT",
        "json",
        p.one_of("json", "text", "none"),
        "Stdout log lines: ECS JSON, plain text, or none (keep your own handlers).",
        kit_default=True,
    )
    log_level: str = setting(
        "OTEL_ASGI_KIT_LOG_LEVEL",
        "info",
        p.one_of("debug", "info", "warning", "error", "critical"),
        "Root logger level.",
        kit_default=True,
    )
    log_file: str | None = setting(
        "OTEL_ASGI_KIT_LOG_FILE",
        "",
        p.parse_text,
        "Also write log lines (as on stdout; ECS JSON unless `text`) to rotating files, one per process: "
        "`app.log` becomes `app.<pid>.log`.",
        optional=True,
    )
    log_file_max_bytes: int = setting(
        "OTEL_ASGI_KIT_LOG_FILE_MAX_BYTES",
        "10485760",
        p.int_between(1024, 2**40),
        "Size (bytes) at which a log file rotates to `.1`; default 10 MB.",
    )
    log_file_backups: int = setting(
        "OTEL_ASGI_KIT_LOG_FILE_BACKUPS", "5", p.int_between(1, 1000), "Rotated log files kept per process."
    )
    # Nothing lost while the collector is away.
    spool: SpoolSettings = group(SpoolSettings)
    # Process behaviour.
    auto_instrument: bool = setting(
        "OTEL_ASGI_KIT_AUTO_INSTRUMENT",
        "true",
        p.parse_bool,
        "Wrap the app uvicorn/hypercorn/gunicorn load, with no code change.",
        kit_default=True,
    )
    shutdown_timeout_s: float = setting(
        "OTEL_ASGI_KIT_SHUTDOWN_TIMEOUT",
        "4",
        p.float_between(0.1, 120),
        "Seconds the final flush may take at exit, all signals together; with the server's own shutdown "
        "the process is gone within 5 s by default, under Docker's 10 s and Kubernetes' 30 s grace.",
        kit_default=True,
    )
    metrics_dir: str | None = setting(
        "OTEL_ASGI_KIT_METRICS_DIR",
        "",
        p.parse_text,
        "Directory where each worker writes its metric snapshot; default: a fresh temp dir made by the "
        "first process and inherited by its workers.",
        kit_default=True,
        optional=True,
    )
    metrics_snapshot_interval_ms: int = setting(
        "OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL",
        "1000",
        p.int_between(50, 600_000),
        "How often (ms) each worker writes its snapshot: how stale a multi-worker scrape can be.",
        kit_default=True,
    )
    loop_lag: bool = setting(
        "OTEL_ASGI_KIT_LOOP_LAG",
        "true",
        p.parse_bool,
        "Measure event-loop lag (`python.asyncio.event_loop.lag`).",
        kit_default=True,
    )
    blocked_loop_threshold_ms: int = setting(
        "OTEL_ASGI_KIT_BLOCKED_LOOP_THRESHOLD",
        "100",
        p.int_between(0, 600_000),
        "Report the stack when the event loop is blocked this many ms; 0 switches the detector off.",
        kit_default=True,
    )
    runtime_metrics: bool = setting(
        "OTEL_ASGI_KIT_RUNTIME_METRICS",
        "true",
        p.parse_bool,
        "Process CPU, memory, file descriptors, threads, context switches and GC metrics.",
        kit_default=True,
    )
    admin_token: str | None = setting(
        "OTEL_ASGI_KIT_ADMIN_TOKEN",
        "",
        p.parse_text,
        "When set, the admin port answers only requests with `Authorization: Bearer <token>` (secret).",
        kit_default=True,
        secret=True,
        optional=True,
    )
    accelerator: bool = setting(
        "OTEL_ASGI_KIT_ACCELERATOR",
        "true",
        p.parse_bool,
        "Use the compiled OTLP encoder and ASGI request path (`pip install ./accel`) when installed; `false`: Python.",
        kit_default=True,
    )
    pages: bool = setting(
        "OTEL_ASGI_KIT_PAGES",
        "true",
        p.parse_bool,
        "Local trace pages on the admin port (`/kit/traces`).",
        kit_default=True,
    )
    pages_public: bool = setting(
        "OTEL_ASGI_KIT_PAGES_PUBLIC",
        "false",
        p.parse_bool,
        "Serve the pages (`/kit/`) without a token on an admin port bound beyond loopback; otherwise such a "
        "port serves only `/metrics` and `/healthz`.",
        kit_default=True,
    )
    dashboard_interval_s: float = setting(
        "OTEL_ASGI_KIT_DASHBOARD_INTERVAL",
        "5",
        p.float_between(0.2, 60),
        "Seconds between the dashboard's samples of the summed metrics (`/kit/dashboard`); it keeps one hour.",
        kit_default=True,
    )
    # Not variables: what loading found.
    problems: tuple[str, ...] = ()
    sources: Mapping[str, Source] = field(default_factory=dict, repr=False)
    rejected: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def otlp(self) -> dict[str, OtlpTarget]:
        """The effective OTLP target of each signal: per-signal values win over general ones."""
        targets = {}
        overrides = {"traces": self.traces_otlp, "metrics": self.metrics_otlp, "logs": self.logs_otlp}
        for signal in SIGNALS:
            over = overrides[signal]
            protocol = over.protocol or self.otlp_protocol
            endpoint = over.endpoint
            if endpoint is None:
                root = self.otlp_endpoint or (
                    "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318"
                )
                # The spec: per-signal paths are appended to the base URL for HTTP only.
                endpoint = root if protocol == "grpc" else f"{root.rstrip('/')}/{_SIGNAL_PATHS[signal]}"
            targets[signal] = OtlpTarget(
                endpoint=endpoint,
                protocol=protocol,
                headers=self.otlp_headers if over.headers is None else over.headers,
                timeout_s=(self.otlp_timeout_ms if over.timeout_ms is None else over.timeout_ms) / 1000,
                compression=over.compression or self.otlp_compression,
            )
        return targets

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


VARS: tuple[Var[Any], ...] = tuple(walk(Settings))
VAR_BY_NAME: dict[str, Var[Any]] = {v.name: v for v in VARS}


def env_name(field_name: str) -> str:
    """The environment variable of a top-level ``Settings`` field (e.g. ``metrics_dir``)."""
    return var_of(Settings, field_name).name


def _capped(r: Reader, limits: BatchLimits, prefix: str) -> BatchLimits:
    if limits.max_export_batch_size <= limits.max_queue_size:
        return limits
    r.problems.append(
        f"{prefix}_MAX_EXPORT_BATCH_SIZE={limits.max_export_batch_size} is larger than "
        f"{prefix}_MAX_QUEUE_SIZE={limits.max_queue_size}; using {limits.max_queue_size}"
    )
    return dataclasses.replace(limits, max_export_batch_size=limits.max_queue_size)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Parse every declared variable once; bad values become ``problems`` lines."""
    r = Reader(environ)
    settings = r.build(Settings)
    settings = settings.replace(
        span_batch=_capped(r, settings.span_batch, "OTEL_BSP"),
        log_batch=_capped(r, settings.log_batch, "OTEL_BLRP"),
    )
    return settings.replace(problems=tuple(r.problems), sources=dict(r.sources), rejected=dict(r.rejected))
