"""A real OTLP/HTTP receiver for the tests: decodes what the app exported with opentelemetry-proto."""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

T = TypeVar("T")


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attrs(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]


@dataclass
class LogRecord:
    body: Any
    severity_text: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)


class OtlpReceiver:
    """Listens on 127.0.0.1 on a free port; ``endpoint`` is the OTLP/HTTP base URL."""

    def __init__(self, port: int = 0, *, tls: tuple[str, str] | None = None, keep_alive: float | None = None) -> None:
        """``tls``: (certificate file, key file) to serve HTTPS; ``keep_alive``: HTTP/1.1, a connection kept
        open until idle this many seconds (``connections`` counts the ones accepted)."""
        self.received = Received()
        self.connections = 0
        self._lock = threading.Lock()
        self._keep_alive = keep_alive
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if receiver._keep_alive is not None else "HTTP/1.0"
            timeout = receiver._keep_alive

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._store(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _store(self, path: str, body: bytes) -> None:
        with self._lock:
            self.received.raw.append(body)
            if path.endswith("/v1/traces"):
                self._store_spans(ExportTraceServiceRequest.FromString(body))
            elif path.endswith("/v1/logs"):
                self._store_logs(ExportLogsServiceRequest.FromString(body))
            elif path.endswith("/v1/metrics"):
                self.received.metrics.append(ExportMetricsServiceRequest.FromString(body))

    def _store_spans(self, request: ExportTraceServiceRequest) -> None:
        for rs in request.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.received.spans.append(
                        Span(
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=attrs(s.attributes),
                            status_code=s.status.code,
                            events=[(e.name, attrs(e.attributes)) for e in s.events],
                            resource=resource,
                        )
                    )

    def _store_logs(self, request: ExportLogsServiceRequest) -> None:
        for rl in request.resource_logs:
            resource = attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    self.received.logs.append(
                        LogRecord(
                            body=any_value(r.body),
                            severity_text=r.severity_text,
                            trace_id=r.trace_id.hex(),
                            span_id=r.span_id.hex(),
                            attributes=attrs(r.attributes),
                            resource=resource,
                        )
                    )

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self.received.spans)

    def logs(self) -> list[LogRecord]:
        with self._lock:
            return list(self.received.logs)

    def final_count(self, name: str = "http.server.request.duration") -> int:
        """Sum over processes of the last cumulative count each pushed for the histogram ``name``."""
        with self._lock:
            requests = list(self.received.metrics)
        latest: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        for request in requests:
            for rm in request.resource_metrics:
                instance = next(
                    (kv.value.string_value for kv in rm.resource.attributes if kv.key == "service.instance.id"), ""
                )
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != name:
                            continue
                        for point in metric.histogram.data_points:
                            attrs = tuple(sorted((kv.key, str(kv.value)) for kv in point.attributes))
                            latest[(instance, attrs)] = point.count
        return sum(latest.values())

    def metric_points(self, name: str) -> Iterator[Any]:
        with self._lock:
            requests = list(self.received.metrics)
        for request in requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == name:
                            data = getattr(metric, metric.WhichOneof("data"))
                            yield from data.data_points


def wait_for(probe: Callable[[], T], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; the last value on timeout."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value
