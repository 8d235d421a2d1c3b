"""The real pipeline: SDK -> OTLP/HTTP -> otelcol-kit -> Elasticsearch and Prometheus.

Slow (a cold run builds the collector and downloads Elasticsearch); select
with ``-m e2e``.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from tests.e2e.conftest import skip_if_unavailable
from tests.infra import services

# A cold cache builds the collector (~5 min on 2 cores) inside the first
# test's setup: more than the suite's default 300 s pytest-timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

T = TypeVar("T")


@dataclass(frozen=True)
class Sent:
    service_name: str
    trace_id: str
    span_id: str
    span_name: str
    log_body: str


@pytest.fixture(scope="module")
def sent(collector: services.Collector) -> Sent:
    """One span and one log record inside it, exported over OTLP/HTTP by the SDK."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="needs opentelemetry-exporter-otlp-proto-http")
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import format_span_id, format_trace_id

    # A unique service per run: results from an earlier run can never match.
    service_name = f"e2e-{uuid.uuid4().hex[:12]}"
    resource = Resource.create({"service.name": service_name})
    # Local providers, not the global ones: nothing leaks into other tests.
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.otlp_http_url}/v1/traces"))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector.otlp_http_url}/v1/logs"))
    )
    span_name = "GET /items/{item_id}"
    log_body = f"handled item for {service_name}"
    with tracer_provider.get_tracer("e2e").start_as_current_span(
        span_name, attributes={"http.request.method": "GET"}
    ) as span:
        logger_provider.get_logger("e2e").emit(body=log_body, severity_number=SeverityNumber.INFO, severity_text="INFO")
        context = span.get_span_context()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return Sent(service_name, format_trace_id(context.trace_id), format_span_id(context.span_id), span_name, log_body)


def _eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not appear within {timeout:.0f}s")
        time.sleep(0.5)


def _search(es: services.Elasticsearch, pattern: str, trace_id: str) -> dict[str, Any] | None:
    query = {"query": {"term": {"trace_id": trace_id}}}
    try:
        hits = services.http_json("POST", f"{es.url}/{pattern}/_search", query)["hits"]["hits"]
    except OSError:  # 404 until the collector created the first data stream
        return None
    return hits[0] if hits else None


def test_span_and_log_reach_elasticsearch_with_one_trace_id(elasticsearch: services.Elasticsearch, sent: Sent) -> None:
    """A span and the log emitted inside it land in OTel data streams, joined by trace id."""
    span_hit = _eventually(lambda: _search(elasticsearch, "traces-*", sent.trace_id), "span document")
    log_hit = _eventually(lambda: _search(elasticsearch, "logs-*", sent.trace_id), "log document")
    span, log = span_hit["_source"], log_hit["_source"]

    assert span["span_id"] == sent.span_id
    assert span["name"] == sent.span_name
    assert span["resource"]["attributes"]["service.name"] == sent.service_name
    assert log["trace_id"] == span["trace_id"] == sent.trace_id
    assert log["span_id"] == sent.span_id
    assert log["body"]["text"] == sent.log_body
    assert log["resource"]["attributes"]["service.name"] == sent.service_name
    # OTel-native mapping writes to data streams (backing indices are .ds-*).
    # The zip has no data-streams module, so no _data_stream API to ask.
    assert span_hit["_index"].startswith(".ds-traces-generic.otel-default-")
    assert log_hit["_index"].startswith(".ds-logs-generic.otel-default-")


def test_span_metrics_are_queryable_in_prometheus(collector: services.Collector, sent: Sent) -> None:
    """Prometheus scraping the collector sees the span_metrics calls counter for the span."""
    promql = f'traces_span_metrics_calls_total{{service_name="{sent.service_name}"}}'
    with skip_if_unavailable(), services.run_prometheus([collector.prometheus_target]) as prometheus:
        url = f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"

        def probe() -> list[dict[str, Any]] | None:
            result: list[dict[str, Any]] = services.http_json("GET", url)["data"]["result"]
            return result or None

        series = _eventually(probe, promql)

    assert len(series) == 1
    labels, (_, value) = series[0]["metric"], series[0]["value"]
    assert labels["span_name"] == sent.span_name
    assert labels["http_request_method"] == "GET"
    assert float(value) == 1.0
