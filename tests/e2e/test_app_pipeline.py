"""The example app under ``opentelemetry-instrument`` -> otelcol-kit -> Elasticsearch and Prometheus.

The same path as ``docker compose up``, without Docker: the real server
process, the collector config of collector/, a real Elasticsearch and a real
Prometheus. Everything is read back from the backends. Select with ``-m e2e``.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from tests.e2e import kibana
from tests.e2e.conftest import skip_if_unavailable
from tests.infra import dashboards, services
from tests.support.servers import RunningServer, kit_env, run_server

# A cold cache builds the collector (~5 min on 2 cores) inside the first setup.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

SERVICE_NAME = "shop"  # kit_env's OTEL_SERVICE_NAME
T = TypeVar("T")


@dataclass(frozen=True)
class Exchange:
    """One request and the ids its ``traceresponse`` header quoted back."""

    path: str
    status: int
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class AppRun:
    server: RunningServer
    item: Exchange
    fail: Exchange


@pytest.fixture(scope="module")
def app(collector: services.Collector) -> Iterator[AppRun]:
    """The Starlette example, one GET /items/7 and one GET /fail; kept running for the Prometheus scrape."""
    with run_server("uvicorn", "examples.starlette_app:app", kit_env(collector.otlp_http_url)) as server:
        item, fail = (_get(server, path) for path in ("/items/7", "/fail"))
        yield AppRun(server, item, fail)


def _get(server: RunningServer, path: str) -> Exchange:
    response = httpx.get(server.base_url + path, timeout=10)
    # traceresponse: 00-<trace-id>-<span-id>-<flags>
    _, trace_id, span_id, _ = response.headers["traceresponse"].split("-")
    return Exchange(path, response.status_code, trace_id, span_id)


def _eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not appear within {timeout:.0f}s")
        time.sleep(0.5)


def _search(es: services.Elasticsearch, pattern: str, *filters: dict[str, Any]) -> list[dict[str, Any]]:
    query = {"size": 100, "query": {"bool": {"filter": list(filters)}}}
    try:
        hits: list[dict[str, Any]] = services.http_json("POST", f"{es.url}/{pattern}/_search", query)["hits"]["hits"]
    except OSError:  # 404 until the collector created the first data stream
        return []
    return [hit["_source"] for hit in hits]


def _one(es: services.Elasticsearch, pattern: str, *filters: dict[str, Any]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = _search(es, pattern, *filters)
        assert len(found) <= 1, f"more than one document in {pattern} for {filters}: {found}"
        return found[0] if found else None

    return _eventually(probe, f"a document in {pattern} matching {filters}")


def _at_least(es: services.Elasticsearch, pattern: str, count: int, *filters: dict[str, Any]) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        found = _search(es, pattern, *filters)
        return found if len(found) >= count else None

    return _eventually(probe, f"{count} documents in {pattern} matching {filters}")


def _term(field: str, value: Any) -> dict[str, Any]:
    return {"term": {field: value}}


def test_request_span_and_handler_log_share_the_trace_id_of_traceresponse(
    elasticsearch: services.Elasticsearch, app: AppRun
) -> None:
    """GET /items/7: the server span and the handler's log line are stored under the header's trace id."""
    item = app.item
    assert item.status == 200
    span = _one(elasticsearch, "traces-*", _term("trace_id", item.trace_id))
    log = _one(
        elasticsearch, "logs-*", _term("trace_id", item.trace_id), {"match_phrase": {"body.text": "looking up item 7"}}
    )

    assert span["name"] == "GET /items/{item_id}"
    assert span["kind"] == "Server"
    assert span["span_id"] == item.span_id
    assert span["attributes"]["http.route"] == "/items/{item_id}"
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["attributes"]["url.path"] == "/items/7"
    assert log["body"]["text"] == "looking up item 7"
    assert log["trace_id"] == span["trace_id"] == item.trace_id
    assert log["span_id"] == item.span_id
    assert log["scope"]["name"] == "shop"  # the example's logger
    assert log["severity_text"] == "INFO"


def test_failing_request_stores_the_exception_with_its_stack_trace(
    elasticsearch: services.Elasticsearch, app: AppRun
) -> None:
    """GET /fail: an errored span, its exception event and the server's error log, each with the traceback."""
    fail = app.fail
    assert fail.status == 500
    trace = _term("trace_id", fail.trace_id)
    span = _one(elasticsearch, "traces-*", trace)
    # The OTel-native mapping stores span events as their own documents in the
    # logs data stream (event_name), not inside the span document.
    event = _one(elasticsearch, "logs-*", trace, _term("event_name", "exception"))
    error_log = _one(elasticsearch, "logs-*", trace, _term("severity_text", "ERROR"))

    assert span["name"] == "GET /fail"
    assert span["status"] == {"code": "Error", "message": "RuntimeError: boom"}
    assert span["attributes"]["error.type"] == "RuntimeError"
    assert span["attributes"]["http.response.status_code"] == 500
    assert event["span_id"] == error_log["span_id"] == fail.span_id
    assert error_log["scope"]["name"] == "uvicorn.error"
    assert error_log["body"]["text"].startswith("Exception in ASGI application")
    for document in (event, error_log):
        attributes = document["attributes"]
        assert attributes["exception.type"] == "RuntimeError"
        assert attributes["exception.message"] == "boom"
        stacktrace = attributes["exception.stacktrace"]
        assert stacktrace.startswith("Traceback (most recent call last):")
        # The frame of the handler that raised, with its source line.
        assert 'examples/starlette_app.py", line' in stacktrace
        assert 'raise RuntimeError("boom")' in stacktrace
        assert stacktrace.rstrip().endswith("RuntimeError: boom")


def test_every_document_names_the_service_and_its_instance(elasticsearch: services.Elasticsearch, app: AppRun) -> None:
    """Spans, span events and logs of both requests carry service.name and one service.instance.id."""
    trace_ids = {"terms": {"trace_id": [app.item.trace_id, app.fail.trace_id]}}
    spans = _at_least(elasticsearch, "traces-*", 2, trace_ids)
    # /items/7: handler, worker-thread and access logs; /fail: exception event, error and access logs.
    logs = _at_least(elasticsearch, "logs-*", 6, trace_ids)
    resources = [doc["resource"]["attributes"] for doc in [*spans, *logs]]

    assert {r["service.name"] for r in resources} == {SERVICE_NAME}
    instance_ids = {r.get("service.instance.id") for r in resources}
    assert len(instance_ids) == 1 and None not in instance_ids and "" not in instance_ids
    # opentelemetry-instrument execs the server, so the resource's pid is the process we started.
    assert {r["process.pid"] for r in resources} == {app.server.process.pid}
    # Resource attributes are passthrough fields: Kibana-style top-level queries find them.
    (instance_id,) = instance_ids
    by_instance = _search(elasticsearch, "traces-*", _term("service.instance.id", instance_id))
    assert {doc["trace_id"] for doc in by_instance} == {app.item.trace_id, app.fail.trace_id}


def _prometheus_query(prometheus: services.Prometheus, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    result: list[dict[str, Any]] = services.http_json("GET", url)["data"]["result"]
    return result


def _series(
    prometheus: services.Prometheus, metric: str, matchers: str, by: tuple[str, ...], count: int = 2
) -> dict[tuple[str, ...], float]:
    """Wait for ``count`` series of ``sum by (<by>) (metric{matchers})``; map their ``by`` labels to values."""
    promql = f"sum by ({', '.join(by)}) ({metric}{{{matchers}}})"

    def probe() -> list[dict[str, Any]] | None:
        result = _prometheus_query(prometheus, promql)
        return result if len(result) >= count else None

    return {tuple(s["metric"][label] for label in by): float(s["value"][1]) for s in _eventually(probe, promql)}


def test_red_series_for_the_app_are_queryable_in_prometheus(collector: services.Collector, app: AppRun) -> None:
    """Prometheus scraping the collector and the app's admin port: span-metrics RED and the app's own histogram."""
    targets = [collector.prometheus_target, f"127.0.0.1:{app.server.admin_port}"]
    with skip_if_unavailable(), services.run_prometheus(targets) as prometheus:
        server_spans = f'service_name="{SERVICE_NAME}", span_kind="SPAN_KIND_SERVER"'
        calls = _series(prometheus, "traces_span_metrics_calls_total", server_spans, ("span_name", "status_code"))
        durations = _series(prometheus, "traces_span_metrics_duration_seconds_count", server_spans, ("span_name",))
        app_requests = _series(
            prometheus, "http_server_request_duration_seconds_count", "", ("http_route", "http_response_status_code")
        )

    assert calls == {("GET /items/{item_id}", "STATUS_CODE_UNSET"): 1.0, ("GET /fail", "STATUS_CODE_ERROR"): 1.0}
    assert durations == {("GET /items/{item_id}",): 1.0, ("GET /fail",): 1.0}
    assert app_requests == {("/items/{item_id}", "200"): 1.0, ("/fail", "500"): 1.0}


def test_dashboard_span_metrics_queries_match_the_collector_scrape(collector: services.Collector, app: AppRun) -> None:
    """The Grafana panels built on span_metrics use names and labels the collector really exports."""
    queries = [
        query
        for path in dashboards.dashboard_files()
        for query in dashboards.dashboard_queries(path)
        if any(name.startswith(dashboards.SPAN_METRICS_PREFIX) for name in query.metrics)
    ]
    assert queries, "expected the dashboards to have span-metrics panels"

    def scrape() -> dict[str, set[str]] | None:
        with urllib.request.urlopen(f"http://{collector.prometheus_target}/metrics", timeout=10) as response:
            series = dashboards.scraped_series(response.read().decode())
        return series if any(name.startswith(dashboards.SPAN_METRICS_PREFIX) for name in series) else None

    series = _eventually(scrape, "span metrics on the collector's prometheus exporter")
    assert {query.where: dashboards.missing_names(query, series) for query in queries} == {
        query.where: [] for query in queries
    }


def test_a_word_from_the_stack_trace_finds_the_error_as_in_kibanas_search_bar(
    elasticsearch: services.Elasticsearch, app: AppRun
) -> None:
    """GET /fail: a bare word from its traceback (the example's file name) finds that request's error records."""
    # Discover's search bar without a field name: query_string over every field.
    bare = {"query_string": {"query": "starlette_app.py"}}
    docs = kibana.eventually(
        lambda: kibana.search(elasticsearch, "logs-*", bare, expect=2, fields=["log.level", "_ignored"]),
        "the error log and the exception event by a stack-trace word",
    )
    assert {doc["trace_id"] for doc in docs} == {app.fail.trace_id}
    # uvicorn's error log (ERROR) and the span's exception event (no level: see docs/pipeline.md).
    assert sorted(str(doc["_fields"].get("log.level")) for doc in docs) == ["None", "['ERROR']"]
    assert all("_ignored" not in doc["_fields"] for doc in docs)


def test_a_requests_logs_come_back_in_the_order_they_were_written(
    elasticsearch: services.Elasticsearch, app: AppRun
) -> None:
    """GET /items/7: sorted as Discover sorts (@timestamp, then event.sequence), handler, worker thread, access log."""
    query = {"term": {"trace.id": app.item.trace_id}}
    sort: list[dict[str, Any]] = [{"@timestamp": "asc"}, {"event.sequence": {"order": "asc", "unmapped_type": "long"}}]
    docs = kibana.eventually(
        lambda: kibana.search(elasticsearch, "logs-*", query, sort=sort, expect=3, fields=["message", "service.name"]),
        "the request's 3 logs",
    )
    assert [doc["_fields"]["message"][0] for doc in docs[:2]] == ["looking up item 7", "in a worker thread"]
    assert docs[2]["scope"]["name"] == "uvicorn.access"
    assert {doc["_fields"]["service.name"][0] for doc in docs} == {SERVICE_NAME}
