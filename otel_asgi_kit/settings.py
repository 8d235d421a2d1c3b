"""Every environment variable the kit reads, parsed once into ``Settings``.

Each variable is a ``Var``: name, default, parser, one-line doc. A bad value
never stops the app: ``load_settings`` records one line naming the variable,
the value (masked for secrets) and what was expected, and uses the default.
The README's variable table is generated from ``VARS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Generic, Literal, TypeVar

from otel_asgi_kit import parsers as p
from otel_asgi_kit.redaction import DEFAULT_QUERY_PARAMS

T = TypeVar("T")

Source = Literal["default", "kit default", "env"]


@dataclass(frozen=True)
class Var(Generic[T]):
    name: str
    default: str
    parse: Callable[[str], T]
    doc: str
    kit_default: bool = False  # the kit's default differs from the OTel spec's
    secret: bool = False


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

OTEL_SDK_DISABLED = Var("OTEL_SDK_DISABLED", "false", p.parse_bool, "Switch the whole kit off.")
OTEL_SERVICE_NAME = Var("OTEL_SERVICE_NAME", "unknown_service", p.parse_text, "`service.name` of every signal.")
OTEL_RESOURCE_ATTRIBUTES = Var(
    "OTEL_RESOURCE_ATTRIBUTES", "", p.parse_key_values, "Extra resource attributes, `k=v,k2=v2`."
)
OTEL_TRACES_EXPORTER = Var("OTEL_TRACES_EXPORTER", "otlp", p.list_of("otlp", "console"), "Where spans go.")
OTEL_METRICS_EXPORTER = Var(
    "OTEL_METRICS_EXPORTER",
    "prometheus",
    p.list_of("prometheus", "otlp", "console"),
    "Where metrics go; `prometheus` serves them on the admin port.",
    kit_default=True,
)
OTEL_LOGS_EXPORTER = Var("OTEL_LOGS_EXPORTER", "otlp", p.list_of("otlp", "console"), "Where log records go (OTLP).")
OTEL_EXPORTER_OTLP_ENDPOINT = Var(
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "",
    p.parse_url,
    "Collector base URL; default http://localhost:4318 (http/protobuf) or :4317 (grpc).",
)
OTEL_EXPORTER_OTLP_PROTOCOL = Var(
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "http/protobuf",
    p.one_of("http/protobuf", "grpc"),
    "OTLP transport.",
)
OTEL_EXPORTER_OTLP_HEADERS = Var(
    "OTEL_EXPORTER_OTLP_HEADERS",
    "",
    p.parse_key_values,
    "Headers sent to the collector, `k=v,...` (secret: never printed).",
    secret=True,
)
OTEL_EXPORTER_OTLP_TIMEOUT = Var(
    "OTEL_EXPORTER_OTLP_TIMEOUT", "10000", p.int_between(1, 600_000), "Export timeout, ms."
)
OTEL_EXPORTER_OTLP_COMPRESSION = Var(
    "OTEL_EXPORTER_OTLP_COMPRESSION", "none", p.one_of("none", "gzip"), "Payload compression."
)


def _per_signal(signal: str) -> tuple[Var[Any], ...]:
    up = signal.upper()
    return (
        Var(f"OTEL_EXPORTER_OTLP_{up}_ENDPOINT", "", p.parse_url, f"Full URL for {signal}."),
        Var(
            f"OTEL_EXPORTER_OTLP_{up}_PROTOCOL",
            "",
            p.one_of("http/protobuf", "grpc"),
            f"OTLP transport for {signal}.",
        ),
        Var(
            f"OTEL_EXPORTER_OTLP_{up}_HEADERS",
            "",
            p.parse_key_values,
            f"Headers for {signal} (secret).",
            secret=True,
        ),
        Var(
            f"OTEL_EXPORTER_OTLP_{up}_TIMEOUT",
            "",
            p.int_between(1, 600_000),
            f"Timeout for {signal}, ms.",
        ),
        Var(
            f"OTEL_EXPORTER_OTLP_{up}_COMPRESSION",
            "",
            p.one_of("none", "gzip"),
            f"Compression for {signal}.",
        ),
    )


OTEL_TRACES_SAMPLER = Var("OTEL_TRACES_SAMPLER", "parentbased_always_on", p.one_of(*_SAMPLERS), "Sampler.")
OTEL_TRACES_SAMPLER_ARG = Var(
    "OTEL_TRACES_SAMPLER_ARG", "1.0", p.float_between(0, 1), "Ratio for the *traceidratio samplers."
)


def _batch(prefix: str, what: str, delay: str) -> tuple[Var[int], ...]:
    return (
        Var(f"{prefix}_SCHEDULE_DELAY", delay, p.int_between(1, 600_000), f"{what}: ms between exports."),
        Var(f"{prefix}_EXPORT_TIMEOUT", "30000", p.int_between(1, 600_000), f"{what}: export timeout, ms."),
        Var(f"{prefix}_MAX_QUEUE_SIZE", "2048", p.int_between(1, 10_000_000), f"{what}: queue bound (drops past it)."),
        Var(f"{prefix}_MAX_EXPORT_BATCH_SIZE", "512", p.int_between(1, 10_000_000), f"{what}: records per export."),
    )


OTEL_BSP = _batch("OTEL_BSP", "Spans", "5000")
OTEL_BLRP = _batch("OTEL_BLRP", "Log records", "1000")
OTEL_METRIC_EXPORT_INTERVAL = Var(
    "OTEL_METRIC_EXPORT_INTERVAL", "60000", p.int_between(100, 86_400_000), "OTLP metric push interval, ms."
)
OTEL_METRIC_EXPORT_TIMEOUT = Var(
    "OTEL_METRIC_EXPORT_TIMEOUT", "30000", p.int_between(1, 600_000), "OTLP metric push timeout, ms."
)
OTEL_EXPORTER_PROMETHEUS_HOST = Var(
    "OTEL_EXPORTER_PROMETHEUS_HOST",
    "localhost",
    p.parse_host,
    "Admin port bind address; containers need `0.0.0.0` to be scraped.",
)
OTEL_EXPORTER_PROMETHEUS_PORT = Var(
    "OTEL_EXPORTER_PROMETHEUS_PORT", "9464", p.int_between(1, 65535), "Admin port: `/metrics`, `/healthz`."
)
OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST = Var(
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
    "",
    p.parse_patterns,
    "Request headers to record on the span (regexes, `.*` for all).",
)
OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE = Var(
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
    "",
    p.parse_patterns,
    "Response headers to record on the span (regexes).",
)
OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS = Var(
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
    "",
    p.parse_patterns,
    "More header names (regexes) whose values are replaced by `REDACTED`; added to the kit's list.",
)
OTEL_PYTHON_EXCLUDED_URLS = Var(
    "OTEL_PYTHON_EXCLUDED_URLS",
    DEFAULT_EXCLUDED_URLS,
    p.parse_patterns,
    "Paths (regexes, searched in the path) with no span and no metrics.",
    kit_default=True,
)
OTEL_ASGI_KIT_LOG_FORMAT = Var(
    "OTEL_ASGI_KIT_LOG_FORMAT",
    "json",
    p.one_of("json", "text", "none"),
    "Stdout log lines: ECS JSON, plain text, or none (keep your own handlers).",
    kit_default=True,
)
OTEL_ASGI_KIT_LOG_LEVEL = Var(
    "OTEL_ASGI_KIT_LOG_LEVEL",
    "info",
    p.one_of("debug", "info", "warning", "error", "critical"),
    "Root logger level.",
    kit_default=True,
)
OTEL_ASGI_KIT_TRACE_RESPONSE_HEADER = Var(
    "OTEL_ASGI_KIT_TRACE_RESPONSE_HEADER",
    "traceresponse",
    p.parse_header_name,
    "Response header carrying the trace id (W3C `traceresponse`); empty to switch off.",
    kit_default=True,
)
OTEL_ASGI_KIT_AUTO_INSTRUMENT = Var(
    "OTEL_ASGI_KIT_AUTO_INSTRUMENT",
    "true",
    p.parse_bool,
    "Wrap the app uvicorn/hypercorn/gunicorn load, with no code change.",
    kit_default=True,
)
OTEL_ASGI_KIT_DURATION_BUCKETS = Var(
    "OTEL_ASGI_KIT_DURATION_BUCKETS",
    DEFAULT_DURATION_BUCKETS,
    p.parse_buckets,
    "Bucket bounds (seconds) of `http.server.request.duration`.",
    kit_default=True,
)
OTEL_ASGI_KIT_SHUTDOWN_TIMEOUT = Var(
    "OTEL_ASGI_KIT_SHUTDOWN_TIMEOUT",
    "4",
    p.float_between(0.1, 120),
    "Seconds the final flush may take at exit, all signals together; with the server's own shutdown "
    "the process is gone within 5 s by default, under Docker's 10 s and Kubernetes' 30 s grace.",
    kit_default=True,
)

OTEL_ASGI_KIT_METRICS_DIR = Var(
    "OTEL_ASGI_KIT_METRICS_DIR",
    "",
    p.parse_text,
    "Directory where each worker writes its metric snapshot; default: a fresh temp dir made by the first "
    "process and inherited by its workers.",
    kit_default=True,
)
OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL = Var(
    "OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL",
    "1000",
    p.int_between(50, 600_000),
    "How often (ms) each worker writes its snapshot: how stale a multi-worker scrape can be.",
    kit_default=True,
)

OTEL_ASGI_KIT_LOOP_LAG = Var(
    "OTEL_ASGI_KIT_LOOP_LAG",
    "true",
    p.parse_bool,
    "Measure event-loop lag (`python.asyncio.event_loop.lag`).",
    kit_default=True,
)
OTEL_ASGI_KIT_BLOCKED_LOOP_THRESHOLD = Var(
    "OTEL_ASGI_KIT_BLOCKED_LOOP_THRESHOLD",
    "100",
    p.int_between(0, 600_000),
    "Report the stack when the event loop is blocked this many ms; 0 switches the detector off.",
    kit_default=True,
)
OTEL_ASGI_KIT_RUNTIME_METRICS = Var(
    "OTEL_ASGI_KIT_RUNTIME_METRICS",
    "true",
    p.parse_bool,
    "Process CPU, memory, file descriptors, threads, context switches and GC metrics.",
    kit_default=True,
)
OTEL_ASGI_KIT_ADMIN_TOKEN = Var(
    "OTEL_ASGI_KIT_ADMIN_TOKEN",
    "",
    p.parse_text,
    "When set, the admin port answers only requests with `Authorization: Bearer <token>` (secret).",
    kit_default=True,
    secret=True,
)
OTEL_ASGI_KIT_PAGES = Var(
    "OTEL_ASGI_KIT_PAGES",
    "true",
    p.parse_bool,
    "Local trace pages on the admin port (`/kit/traces`).",
    kit_default=True,
)
OTEL_ASGI_KIT_PAGES_PUBLIC = Var(
    "OTEL_ASGI_KIT_PAGES_PUBLIC",
    "false",
    p.parse_bool,
    "Serve the pages (`/kit/`) without a token on an admin port bound beyond loopback; otherwise such a "
    "port serves only `/metrics` and `/healthz`.",
    kit_default=True,
)
OTEL_ASGI_KIT_DASHBOARD_INTERVAL = Var(
    "OTEL_ASGI_KIT_DASHBOARD_INTERVAL",
    "5",
    p.float_between(0.2, 60),
    "Seconds between the dashboard's samples of the summed metrics (`/kit/dashboard`); it keeps one hour.",
    kit_default=True,
)

OTEL_ASGI_KIT_REDACT_QUERY_PARAMS = Var(
    "OTEL_ASGI_KIT_REDACT_QUERY_PARAMS",
    "",
    p.parse_patterns,
    "More query parameter names (regexes) whose values are replaced by `REDACTED`; added to the kit's list.",
)
OTEL_ASGI_KIT_TRUSTED_PROXIES = Var(
    "OTEL_ASGI_KIT_TRUSTED_PROXIES",
    "",
    p.parse_networks,
    "Peers (IPs/CIDRs) whose `X-Forwarded-For`/`Forwarded` give the client address; others are the client.",
)

OTLP_SIGNAL_VARS: dict[str, tuple[Var[Any], ...]] = {s: _per_signal(s) for s in SIGNALS}

VARS: tuple[Var[Any], ...] = (
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_LOGS_EXPORTER,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    *(v for s in SIGNALS for v in OTLP_SIGNAL_VARS[s]),
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
    *OTEL_BSP,
    *OTEL_BLRP,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_METRIC_EXPORT_TIMEOUT,
    OTEL_EXPORTER_PROMETHEUS_HOST,
    OTEL_EXPORTER_PROMETHEUS_PORT,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    OTEL_PYTHON_EXCLUDED_URLS,
    OTEL_ASGI_KIT_LOG_FORMAT,
    OTEL_ASGI_KIT_LOG_LEVEL,
    OTEL_ASGI_KIT_TRACE_RESPONSE_HEADER,
    OTEL_ASGI_KIT_AUTO_INSTRUMENT,
    OTEL_ASGI_KIT_DURATION_BUCKETS,
    OTEL_ASGI_KIT_SHUTDOWN_TIMEOUT,
    OTEL_ASGI_KIT_METRICS_DIR,
    OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL,
    OTEL_ASGI_KIT_LOOP_LAG,
    OTEL_ASGI_KIT_BLOCKED_LOOP_THRESHOLD,
    OTEL_ASGI_KIT_RUNTIME_METRICS,
    OTEL_ASGI_KIT_ADMIN_TOKEN,
    OTEL_ASGI_KIT_PAGES,
    OTEL_ASGI_KIT_PAGES_PUBLIC,
    OTEL_ASGI_KIT_DASHBOARD_INTERVAL,
    OTEL_ASGI_KIT_REDACT_QUERY_PARAMS,
    OTEL_ASGI_KIT_TRUSTED_PROXIES,
)


@dataclass(frozen=True)
class OtlpTarget:
    """Where and how one signal is exported over OTLP."""

    endpoint: str
    protocol: str
    headers: Mapping[str, str] = field(repr=False)
    timeout_s: float
    compression: str


@dataclass(frozen=True)
class BatchLimits:
    schedule_delay_ms: int
    export_timeout_ms: int
    max_queue_size: int
    max_export_batch_size: int


@dataclass(frozen=True)
class Settings:
    sdk_disabled: bool
    service_name: str
    resource_attributes: Mapping[str, str]
    traces_exporters: tuple[str, ...]
    metrics_exporters: tuple[str, ...]
    logs_exporters: tuple[str, ...]
    otlp: Mapping[str, OtlpTarget]
    sampler: str
    sampler_arg: float
    span_batch: BatchLimits
    log_batch: BatchLimits
    metric_export_interval_ms: int
    metric_export_timeout_ms: int
    admin_host: str
    admin_port: int
    capture_request_headers: tuple[str, ...]
    capture_response_headers: tuple[str, ...]
    sanitize_fields: tuple[str, ...]
    excluded_urls: tuple[str, ...]
    log_format: str
    log_level: str
    trace_response_header: str
    auto_instrument: bool
    duration_buckets: tuple[float, ...]
    shutdown_timeout_s: float
    metrics_dir: str
    metrics_snapshot_interval_ms: int
    loop_lag: bool
    blocked_loop_threshold_ms: int
    runtime_metrics: bool
    admin_token: str = field(repr=False)
    pages: bool
    redact_query_params: tuple[str, ...]
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
    problems: tuple[str, ...] = ()
    pages_public: bool = False
    dashboard_interval_s: float = 5.0
    sources: Mapping[str, Source] = field(default_factory=dict, repr=False)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


class _Reader:
    """Reads variables from one mapping, collecting a line per bad value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.sources: dict[str, Source] = {}

    def get(self, var: Var[T]) -> T:
        raw = self.environ.get(var.name)
        if raw is not None and (raw.strip() or var.parse is p.parse_header_name):
            try:
                value = var.parse(raw)
            except p.InvalidValueError as exc:
                shown = "<hidden>" if var.secret else repr(raw)
                used = f"the default {var.default!r}" if var.default else "the default"
                self.problems.append(f"{var.name}={shown} is not {exc.expected}; using {used}")
            else:
                self.sources[var.name] = "env"
                return value
        self.sources[var.name] = "kit default" if var.kit_default else "default"
        return var.parse(var.default)

    def optional(self, var: Var[T]) -> T | None:
        """A variable with no default of its own (endpoint, per-signal overrides)."""
        raw = self.environ.get(var.name, "")
        if not raw.strip():
            return None
        try:
            value = var.parse(raw)
        except p.InvalidValueError as exc:
            shown = "<hidden>" if var.secret else repr(raw)
            self.problems.append(f"{var.name}={shown} is not {exc.expected}; ignoring it")
            return None
        self.sources[var.name] = "env"
        return value


_SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}


def _otlp_targets(r: _Reader) -> dict[str, OtlpTarget]:
    protocol = r.get(OTEL_EXPORTER_OTLP_PROTOCOL)
    base = r.optional(OTEL_EXPORTER_OTLP_ENDPOINT)
    headers = r.get(OTEL_EXPORTER_OTLP_HEADERS)
    timeout_ms = r.get(OTEL_EXPORTER_OTLP_TIMEOUT)
    compression = r.get(OTEL_EXPORTER_OTLP_COMPRESSION)
    targets = {}
    for signal in SIGNALS:
        endpoint_v, protocol_v, headers_v, timeout_v, compression_v = OTLP_SIGNAL_VARS[signal]
        sig_protocol = r.optional(protocol_v) or protocol
        endpoint = r.optional(endpoint_v)
        if endpoint is None:
            root = base or ("http://localhost:4317" if sig_protocol == "grpc" else "http://localhost:4318")
            # The spec: per-signal paths are appended to the base URL for HTTP only.
            endpoint = root if sig_protocol == "grpc" else f"{root.rstrip('/')}/{_SIGNAL_PATHS[signal]}"
        sig_headers = r.optional(headers_v)
        sig_timeout = r.optional(timeout_v)
        targets[signal] = OtlpTarget(
            endpoint=endpoint,
            protocol=sig_protocol,
            headers=headers if sig_headers is None else sig_headers,
            timeout_s=(timeout_ms if sig_timeout is None else sig_timeout) / 1000,
            compression=r.optional(compression_v) or compression,
        )
    return targets


def _batch_limits(r: _Reader, group: tuple[Var[int], ...]) -> BatchLimits:
    delay, timeout, queue, batch = (r.get(v) for v in group)
    if batch > queue:
        r.problems.append(f"{group[3].name}={batch} is larger than {group[2].name}={queue}; using {queue}")
        batch = queue
    return BatchLimits(delay, timeout, queue, batch)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Parse every variable once; bad values become ``problems`` lines."""
    r = _Reader(environ)
    sanitize = p.parse_patterns(DEFAULT_SANITIZE_FIELDS) + r.get(
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS
    )
    resource_attributes: dict[str, str] = r.get(OTEL_RESOURCE_ATTRIBUTES)
    settings = Settings(
        sdk_disabled=r.get(OTEL_SDK_DISABLED),
        service_name=r.get(OTEL_SERVICE_NAME),
        resource_attributes=resource_attributes,
        traces_exporters=r.get(OTEL_TRACES_EXPORTER),
        metrics_exporters=r.get(OTEL_METRICS_EXPORTER),
        logs_exporters=r.get(OTEL_LOGS_EXPORTER),
        otlp=_otlp_targets(r),
        sampler=r.get(OTEL_TRACES_SAMPLER),
        sampler_arg=r.get(OTEL_TRACES_SAMPLER_ARG),
        span_batch=_batch_limits(r, OTEL_BSP),
        log_batch=_batch_limits(r, OTEL_BLRP),
        metric_export_interval_ms=r.get(OTEL_METRIC_EXPORT_INTERVAL),
        metric_export_timeout_ms=r.get(OTEL_METRIC_EXPORT_TIMEOUT),
        admin_host=r.get(OTEL_EXPORTER_PROMETHEUS_HOST),
        admin_port=r.get(OTEL_EXPORTER_PROMETHEUS_PORT),
        capture_request_headers=r.get(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST),
        capture_response_headers=r.get(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE),
        sanitize_fields=sanitize,
        excluded_urls=r.get(OTEL_PYTHON_EXCLUDED_URLS),
        log_format=r.get(OTEL_ASGI_KIT_LOG_FORMAT),
        log_level=r.get(OTEL_ASGI_KIT_LOG_LEVEL),
        trace_response_header=r.get(OTEL_ASGI_KIT_TRACE_RESPONSE_HEADER),
        auto_instrument=r.get(OTEL_ASGI_KIT_AUTO_INSTRUMENT),
        duration_buckets=r.get(OTEL_ASGI_KIT_DURATION_BUCKETS),
        shutdown_timeout_s=r.get(OTEL_ASGI_KIT_SHUTDOWN_TIMEOUT),
        metrics_dir=r.optional(OTEL_ASGI_KIT_METRICS_DIR) or "",
        metrics_snapshot_interval_ms=r.get(OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL),
        loop_lag=r.get(OTEL_ASGI_KIT_LOOP_LAG),
        blocked_loop_threshold_ms=r.get(OTEL_ASGI_KIT_BLOCKED_LOOP_THRESHOLD),
        runtime_metrics=r.get(OTEL_ASGI_KIT_RUNTIME_METRICS),
        admin_token=r.optional(OTEL_ASGI_KIT_ADMIN_TOKEN) or "",
        pages=r.get(OTEL_ASGI_KIT_PAGES),
        pages_public=r.get(OTEL_ASGI_KIT_PAGES_PUBLIC),
        dashboard_interval_s=r.get(OTEL_ASGI_KIT_DASHBOARD_INTERVAL),
        redact_query_params=DEFAULT_QUERY_PARAMS + r.get(OTEL_ASGI_KIT_REDACT_QUERY_PARAMS),
        trusted_proxies=r.get(OTEL_ASGI_KIT_TRUSTED_PROXIES),
    )
    return settings.replace(problems=tuple(r.problems), sources=dict(r.sources))
