"""Every app panel of the Grafana dashboard shows data under the compose traffic generator, with a telling legend."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra import dashboards, replicas, services
from tests.support.servers import kit_env, run_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]

GENERATOR = services.REPO_ROOT / "deploy" / "traffic" / "generate.py"
NGINX_CONFIG = services.REPO_ROOT / "deploy" / "nginx" / "nginx.conf"
RATE_WINDOW = "20s"  # stands in for Grafana's $__rate_interval: the whole run fits in it
TRAFFIC_SECONDS = 6


def _all_targets() -> list[tuple[str, dict[str, Any]]]:
    return [(title, t) for path in dashboards.dashboard_files() for title, t in dashboards.panel_targets(path)]


def _app_targets() -> list[tuple[str, dict[str, Any]]]:
    # Span-metrics panels read the collector: tests/e2e checks those.
    return [(title, t) for title, t in _all_targets() if dashboards.SPAN_METRICS_PREFIX not in t["expr"]]


def _as_prometheus_query(expr: str) -> str:
    """The expression as Grafana sends it with every variable on All."""
    return expr.replace("$__rate_interval", RATE_WINDOW).replace('"$job"', '".*"').replace('"$route"', '".*"')


@pytest.mark.parametrize(("title", "target"), _all_targets(), ids=lambda v: v if isinstance(v, str) else v["refId"])
def test_legend_names_what_the_series_are(title: str, target: dict[str, Any]) -> None:
    """A legend is never empty, never names a summed-away label, and tells the query's series apart."""
    assert dashboards.legend_problems(target["expr"], target.get("legendFormat", "")) == []


@pytest.mark.parametrize(
    ("expr", "legend", "problem"),
    [
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))", "{{job}}", "sums away"),
        ("sum by (http_route) (rate(x_count[5m]))", "requests", "names none of them"),
        ("sum(rate(x_count[5m]))", "", "empty legend"),
    ],
)
def test_a_bad_legend_is_reported(expr: str, legend: str, problem: str) -> None:
    """The legend check can fail: the old event-loop-lag legend ({{job}} over a sum by le) among others."""
    assert problem in " ".join(dashboards.legend_problems(expr, legend))


@pytest.fixture(scope="module")
def prometheus_after_traffic() -> Iterator[services.Prometheus]:
    """A real app scraped every second by Prometheus; deploy/traffic/generate.py runs through compose's nginx.conf."""
    env = kit_env(None, OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    with (
        run_server("uvicorn", "examples.starlette_app:app", env) as app,
        services.run_prometheus([f"127.0.0.1:{app.admin_port}"]) as prometheus,
        tempfile.TemporaryDirectory(prefix="kit-proxy-") as work,
    ):
        proxy = replicas.Nginx(replicas.nginx_binary(), Path(work), services.free_port())
        try:
            # The proxy of docker-compose.yml, WebSocket upgrade included.
            proxy.start_compose_config(NGINX_CONFIG, app.base_url.removeprefix("http://"))
            traffic_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRAFFIC_"))}
            traffic_env.update(TRAFFIC_TARGET=proxy.url, TRAFFIC_RPS="25", TRAFFIC_DURATION_S=str(TRAFFIC_SECONDS))
            done = subprocess.run(
                [sys.executable, str(GENERATOR)],
                env=traffic_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            # Every kind of traffic happened: 200, 404, 500, and WebSocket messages without errors.
            summary = done.stdout.strip().splitlines()[-1]
            for outcome in ("'200'", "'404'", "'500'", "'ws'"):
                assert outcome in summary, summary
            assert "ws-error" not in summary, summary
            time.sleep(2.5)  # two more scrapes after the last request
            yield prometheus
        finally:
            proxy.stop()


@pytest.mark.parametrize(("title", "target"), _app_targets(), ids=lambda v: v if isinstance(v, str) else v["refId"])
def test_panel_shows_data_under_the_traffic_generator(
    title: str, target: dict[str, Any], prometheus_after_traffic: services.Prometheus
) -> None:
    """The panel's query returns series, and rates, increases and quantiles are above zero."""
    query = _as_prometheus_query(target["expr"])
    answer = services.http_json("GET", f"{prometheus_after_traffic.url}/api/v1/query?" + _encode(query))
    values = [float(r["value"][1]) for r in answer["data"]["result"]]
    assert values, f"{title}: no series for {query}"
    if any(f in query for f in ("rate(", "increase(", "histogram_quantile(")):
        assert max(values) > 0, f"{title}: {query} -> {values}"


def _encode(query: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"query": query})
