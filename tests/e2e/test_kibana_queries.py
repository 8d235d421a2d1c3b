"""What a Kibana user queries, against the real collector and Elasticsearch.

One trace, sent by the SDK with timestamps picked to hit the exporter's
format (0.157.0 writes the sub-millisecond digits without leading zeros:
904.081664 ms becomes "…904.81664"), log records with a long stack trace,
and a log attribute that collides with a resource attribute. Each test reads
it back the way Discover does: by ``message``, ``log.level``, ``trace.id``,
``service.name``, a bare word in the search bar, sorted by time. Select with
``-m e2e``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.kibana import eventually, search
from tests.infra import services

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

MS = 1_000_000
# Nanoseconds after a whole millisecond, in the order written. Within one
# millisecond 81_664 is written ".81664" (read back as 0.81664 ms, after
# 0.5 ms); across two, 1 ms + 5 ns is written "1.5" (after 1.4 ms).
OFFSETS_NS = (81_664, 500_000, 900_000, MS + 5, MS + 400_000, 2 * MS)
STACK_WORD = "quarterlyledgerreconciliation"


@dataclass(frozen=True)
class Sent:
    service_name: str
    trace_id: str
    log_bodies: tuple[str, ...]
    span_names: tuple[str, ...]
    stacktrace: str


@pytest.fixture(scope="module")
def sent(collector: services.Collector) -> Sent:
    """One trace: a root span, child spans and log records at the adversarial offsets, an error log."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import format_trace_id, set_span_in_context

    service_name = f"kibana-{uuid.uuid4().hex[:12]}"
    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.otlp_http_url}/v1/traces"))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector.otlp_http_url}/v1/logs"))
    )
    tracer = tracer_provider.get_tracer("kibana-e2e")
    logger = logger_provider.get_logger("kibana-e2e")

    base = (time.time_ns() // MS) * MS
    root = tracer.start_span("GET /ledger", start_time=base)
    context = set_span_in_context(root)
    bodies, names = [], []
    for index, offset in enumerate(OFFSETS_NS):
        name, body = f"step {index}", f"ledger step {index} of {service_name}"
        tracer.start_span(name, context=context, start_time=base + offset).end(end_time=base + offset + 10)
        logger.emit(
            timestamp=base + offset,
            context=context,
            body=body,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            attributes={"service.name": "a log attribute, not the service"},
        )
        names.append(name)
        bodies.append(body)
    # A stack trace past the 1,024 characters up to which strings are indexed.
    frames = "".join(f'  File "/srv/ledger/module_{i}.py", line {i}, in step_{i}\n    run_{i}()\n' for i in range(40))
    # The word a user remembers: the name of the function that raised.
    last = f'  File "/srv/ledger/books.py", line 9, in {STACK_WORD}\n'
    stacktrace = f"Traceback (most recent call last):\n{frames}{last}ValueError: unbalanced"
    logger.emit(
        timestamp=base + 3 * MS,
        context=context,
        body="ledger failed",
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        attributes={
            "exception.type": "ValueError",
            "exception.message": "unbalanced",
            "exception.stacktrace": stacktrace,
        },
    )
    root.end(end_time=base + 4 * MS)
    trace_id = format_trace_id(root.get_span_context().trace_id)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return Sent(service_name, trace_id, tuple(bodies), ("GET /ledger", *names), stacktrace)


def _kibana_sort() -> list[dict[str, Any]]:
    # Discover sorts by the data view's time field; event.sequence is the
    # tie-breaker the collector adds (see otel-collector-config.yaml).
    # unmapped_type, as Discover sets it: no error before the first document.
    return [{"@timestamp": "asc"}, {"event.sequence": {"order": "asc", "unmapped_type": "long"}}]


def test_a_traces_logs_come_back_in_the_order_they_were_written(
    elasticsearch: services.Elasticsearch, sent: Sent
) -> None:
    """Sorted by @timestamp then event.sequence, the trace's INFO logs are in the order they were emitted."""
    query = {"bool": {"filter": [{"term": {"trace.id": sent.trace_id}}, {"term": {"log.level": "INFO"}}]}}
    docs = eventually(
        lambda: search(elasticsearch, "logs-*", query, sort=_kibana_sort(), expect=len(OFFSETS_NS)),
        "the trace's INFO logs",
    )
    assert [doc["body"]["text"] for doc in docs] == list(sent.log_bodies)


def test_a_traces_spans_come_back_in_the_order_they_started(elasticsearch: services.Elasticsearch, sent: Sent) -> None:
    """Sorted by @timestamp then event.sequence, the root and its child spans are in start order."""
    query = {"term": {"trace.id": sent.trace_id}}
    docs = eventually(
        lambda: search(elasticsearch, "traces-*", query, sort=_kibana_sort(), expect=len(sent.span_names)),
        "the trace's spans",
    )
    assert [doc["name"] for doc in docs] == list(sent.span_names)


def test_timestamps_are_milliseconds_and_exact_to_the_millisecond(
    elasticsearch: services.Elasticsearch, sent: Sent
) -> None:
    """@timestamp keeps whole milliseconds (as Elastic's templates do), so a record's millisecond is never shifted."""
    query = {"bool": {"filter": [{"term": {"trace.id": sent.trace_id}}, {"term": {"log.level": "INFO"}}]}}
    docs = eventually(
        lambda: search(
            elasticsearch, "logs-*", query, sort=_kibana_sort(), expect=len(OFFSETS_NS), fields=["@timestamp"]
        ),
        "the trace's INFO logs",
    )
    millis = [int(doc["_sort"][0]) for doc in docs]
    sequence = [int(doc["_sort"][1]) for doc in docs]
    assert [m - millis[0] for m in millis] == [offset // MS for offset in OFFSETS_NS]
    assert [s - sequence[0] for s in sequence] == [offset - OFFSETS_NS[0] for offset in OFFSETS_NS]
    assert all(doc["_fields"]["@timestamp"][0].endswith("Z") for doc in docs)


def test_a_word_from_a_stack_trace_finds_the_error(elasticsearch: services.Elasticsearch, sent: Sent) -> None:
    """A 2.5 KB exception.stacktrace is indexed: a bare word in the search bar finds the ERROR record."""
    assert len(sent.stacktrace) > 2000
    # Discover's search bar without a field: query_string over every field.
    bare = {"query_string": {"query": STACK_WORD}}
    (doc,) = eventually(
        lambda: search(
            elasticsearch,
            "logs-*",
            bare,
            expect=1,
            fields=["_ignored", "log.level", "message", "service.name", "error.stack_trace"],
        ),
        "the stack-trace word",
    )
    assert doc["trace_id"] == sent.trace_id
    assert doc["_fields"]["log.level"] == ["ERROR"]
    assert doc["_fields"]["message"] == ["ledger failed"]
    assert doc["_fields"]["error.stack_trace"] == [sent.stacktrace]
    assert "_ignored" not in doc["_fields"]
    # The same word through the analysed sub-field, and the whole value through the keyword.
    by_field = {"match": {"attributes.exception.stacktrace.text": STACK_WORD}}
    assert [d["trace_id"] for d in search(elasticsearch, "logs-*", by_field)] == [sent.trace_id]
    whole = {"term": {"exception.stacktrace": sent.stacktrace}}
    assert [d["trace_id"] for d in search(elasticsearch, "logs-*", whole)] == [sent.trace_id]


def test_service_name_is_the_resources_even_when_a_log_attribute_has_the_same_name(
    elasticsearch: services.Elasticsearch, sent: Sent
) -> None:
    """Top-level service.name is the resource's (Elastic's precedence), not a same-named log attribute."""
    query = {
        "bool": {
            "filter": [{"term": {"service.name": sent.service_name}}, {"match_phrase": {"message": "ledger step 0"}}]
        }
    }
    (doc,) = eventually(
        lambda: search(elasticsearch, "logs-*", query, expect=1, fields=["service.name"]),
        "the first log by service.name",
    )
    assert doc["_fields"]["service.name"] == [sent.service_name]
    assert doc["attributes"]["service.name"] == "a log attribute, not the service"
    spoofed = {"term": {"service.name": "a log attribute, not the service"}}
    assert search(elasticsearch, "logs-*", spoofed) == []
