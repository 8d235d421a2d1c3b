"""The CloudWatch configuration, run for real against moto's server mode (a local AWS API emulator).

otelcol-kit-cloudwatch (collector/cloudwatch/builder-config.yaml, v0.156.0)
with collector/cloudwatch/otel-collector-cloudwatch.yaml: the SDK sends a
span, a log record inside it and a histogram over OTLP; the test reads them
back with boto3 from moto: the log record in CloudWatch Logs, the histogram
as an EMF event, the span as an X-Ray segment. Select with ``-m e2e``.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import skip_if_unavailable
from tests.e2e.kibana import eventually
from tests.infra import aws

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

boto3 = pytest.importorskip("boto3", reason="boto3 comes with the test extra's moto[server]")


@dataclass(frozen=True)
class Sent:
    service_name: str
    trace_id: str
    log_body: str


@dataclass(frozen=True)
class Stack:
    moto: aws.Moto
    sent: Sent


def _xray_trace_id() -> int:
    # X-Ray ids start with the epoch seconds; the exporter drops spans whose
    # ids do not (apps use opentelemetry-sdk-extension-aws's AwsXRayIdGenerator).
    return (int(time.time()) << 96) | random.getrandbits(96)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """moto, the CloudWatch collector, and one span + log + histogram sent through it."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace import SpanKind, format_trace_id

    class XRayIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            return _xray_trace_id()

    with skip_if_unavailable(), aws.run_moto() as moto, aws.run_cloudwatch_collector(moto) as collector:
        service_name = f"cw-{uuid.uuid4().hex[:10]}"
        resource = Resource.create({"service.name": service_name})
        tracer_provider = TracerProvider(resource=resource, id_generator=XRayIds())
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.otlp_http_url}/v1/traces"))
        )
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector.otlp_http_url}/v1/logs"))
        )
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{collector.otlp_http_url}/v1/metrics"), export_interval_millis=3_600_000
        )
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        duration = meter_provider.get_meter("cw").create_histogram("http.server.request.duration", unit="s")
        log_body = f"looking up item 7 for {service_name}"
        attributes: dict[str, str | int] = {
            "http.route": "/items/{item_id}",
            "http.request.method": "GET",
            "http.response.status_code": 200,
        }
        with tracer_provider.get_tracer("cw").start_as_current_span(
            "GET /items/{item_id}", kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            logger_provider.get_logger("shop").emit(
                body=log_body, severity_number=SeverityNumber.INFO, severity_text="INFO"
            )
            trace_id = format_trace_id(span.get_span_context().trace_id)
        duration.record(0.042, attributes)
        for provider in (tracer_provider, logger_provider, meter_provider):
            provider.shutdown()
        yield Stack(moto, Sent(service_name, trace_id, log_body))


def _client(stack: Stack, name: str) -> Any:
    return boto3.client(
        name,
        endpoint_url=stack.moto.endpoint,
        region_name=aws.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _events(stack: Stack, group: str) -> list[dict[str, Any]] | None:
    logs = _client(stack, "logs")
    try:
        events = logs.filter_log_events(logGroupName=group)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return None
    return [json.loads(event["message"]) for event in events] or None


def test_log_records_land_in_cloudwatch_logs_as_json_with_their_trace_id(stack: Stack) -> None:
    """The log record is one CloudWatch Logs event: body, severity and trace id as JSON fields."""
    events = eventually(lambda: _events(stack, "/otel-asgi-kit/logs"), "events in /otel-asgi-kit/logs", timeout=60)
    (event,) = [e for e in events if e.get("body") == stack.sent.log_body]
    assert event["severity_text"] == "INFO"
    assert event["trace_id"] == stack.sent.trace_id
    assert event["resource"]["service.name"] == stack.sent.service_name


def test_metrics_land_as_emf_with_the_declared_dimensions(stack: Stack) -> None:
    """The histogram is an EMF event in the metrics log group, namespace and dimensions as configured."""
    events = eventually(lambda: _events(stack, "/otel-asgi-kit/metrics"), "EMF events", timeout=60)
    emf = [
        e for e in events if "http.server.request.duration" in e and e.get("service.name") == stack.sent.service_name
    ]
    assert len(emf) == 1, events
    (declaration,) = emf[0]["_aws"]["CloudWatchMetrics"]
    assert declaration["Namespace"] == "otel-asgi-kit"
    (dimensions,) = declaration["Dimensions"]  # one dimension set, in the exporter's (sorted) order
    assert sorted(dimensions) == sorted(
        ["service.name", "http.route", "http.request.method", "http.response.status_code"]
    )
    assert emf[0]["http.route"] == "/items/{item_id}"
    assert emf[0]["http.server.request.duration"]["Count"] == 1


def test_spans_land_in_xray_as_segments(stack: Stack) -> None:
    """The server span is an X-Ray segment of the service, with the route as an annotation."""
    xray = _client(stack, "xray")
    tid = stack.sent.trace_id
    xray_id = f"1-{tid[:8]}-{tid[8:]}"

    def segments() -> list[dict[str, Any]] | None:
        traces = xray.batch_get_traces(TraceIds=[xray_id])["Traces"]
        return [json.loads(s["Document"]) for t in traces for s in t["Segments"]] or None

    (segment,) = eventually(segments, f"X-Ray trace {xray_id}", timeout=60)
    assert segment["name"] == stack.sent.service_name
    assert segment["trace_id"] == xray_id
    # The configured indexed_attributes, as annotations (v0.156.0 keeps the dots in their keys).
    assert segment.get("annotations") == {
        "http.route": "/items/{item_id}",
        "http.request.method": "GET",
        "http.response.status_code": 200,
    }, segment
