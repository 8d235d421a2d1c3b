"""The Grafana dashboards only query metrics the kit really exposes on its admin port."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from tests.infra import dashboards
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.servers import kit_env, run_server

pytestmark = pytest.mark.server


def _app_queries() -> list[dashboards.Query]:
    # Span-metrics names come from the collector; tests/e2e/test_app_pipeline.py checks those.
    queries = [q for path in dashboards.dashboard_files() for q in dashboards.dashboard_queries(path)]
    return [q for q in queries if not any(m.startswith(dashboards.SPAN_METRICS_PREFIX) for m in q.metrics)]


@pytest.fixture(scope="module")
def app_series() -> Iterator[dict[str, set[str]]]:
    """Series names and labels of one live admin-port scrape after a 200, a 404, a 500 and a WebSocket session."""
    with (
        OtlpReceiver() as receiver,
        run_server("uvicorn", "examples.starlette_app:app", kit_env(receiver.endpoint)) as srv,
    ):
        for path in ("/items/1", "/items/2", "/v1/items/3", "/missing", "/fail"):
            httpx.get(srv.base_url + path, timeout=10)
        with connect(srv.base_url.replace("http://", "ws://") + "/ws/lobby") as ws:  # the WebSocket panels
            ws.send("hi")
            ws.recv(timeout=5)
        time.sleep(0.6)  # one event-loop lag heartbeat at least
        scrape = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics", timeout=10)
        scrape.raise_for_status()
        yield dashboards.scraped_series(scrape.text)


def test_dashboards_have_app_queries() -> None:
    """There is something to check: the dashboards query the app's HTTP metrics."""
    assert dashboards.dashboard_files()
    names = set().union(*(q.metrics for q in _app_queries()))
    assert {"http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket"} <= names


@pytest.mark.parametrize("query", _app_queries(), ids=lambda q: q.where)
def test_dashboard_query_names_exist_in_a_live_scrape(query: dashboards.Query, app_series: dict[str, set[str]]) -> None:
    """Every metric (and every label it filters or groups by) of the query is in the admin port's /metrics."""
    assert query.metrics, f"no metric name found in {query.expr!r}"
    assert dashboards.missing_names(query, app_series) == []


def test_a_misspelt_metric_or_label_is_reported() -> None:
    """The check can fail: an unknown metric and an unknown label are both named."""
    series = {"http_server_request_duration_seconds_count": {"http_route", "http_response_status_code"}}
    query = dashboards.parse_expr(
        'sum by (http_path) (rate(http_server_requests_total{job=~"$job", http_route=~"$route"}[$__rate_interval]))'
        " / sum(rate(http_server_request_duration_seconds_count[5m]))"
    )
    assert dashboards.missing_names(query, series) == ["metric http_server_requests_total", "label http_path"]


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        (
            'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="5.."}[$__rate_interval])))',
            {"a_bucket"},
            {"le", "x"},
        ),
        ('label_values(a_count{job=~"$job"}, http_route)', {"a_count"}, {"job", "http_route"}),
        ("sum(a) / ignoring(b) group_left sum(c_total offset 5m) > bool 1e3", {"a", "c_total"}, {"b"}),
    ],
)
def test_promql_names_are_parsed(expr: str, metrics: set[str], labels: set[str]) -> None:
    """Functions, keywords, numbers, strings, ranges and Grafana variables are not taken for metric names."""
    query = dashboards.parse_expr(expr)
    assert (query.metrics, query.labels) == (metrics, labels)
