"""The dashboard's data: sampled deltas, windows and quantiles, 400s for bad parameters, pages closed off-loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from otel_asgi_kit import admin
from otel_asgi_kit.admin import AdminServer, is_loopback, start_admin_server
from otel_asgi_kit.metrics.snapshots import Merged
from otel_asgi_kit.pages.dashboard import handlers
from otel_asgi_kit.pages.dashboard_query import build, quantile
from otel_asgi_kit.pages.dashboard_sampler import OTHER, DashboardSampler

BOUNDS = [0.01, 0.1, 1.0]


def _merged(routes: dict[tuple[str, int], list[int]], blocked: float = 0, cpu: float = 0) -> Merged:
    """Cumulative points as the snapshot merge gives them: buckets per (route, status)."""
    points = [
        {
            "attributes": {"http.request.method": "GET", "http.route": route, "http.response.status_code": status}
            | ({"error.type": "500"} if status >= 500 else {}),
            "count": sum(buckets),
            "sum": 0.0,
            "bounds": BOUNDS,
            "buckets": buckets,
            "min": 0.0,
            "max": 1.0,
        }
        for (route, status), buckets in routes.items()
    ]
    merged = Merged()
    merged.add(
        [
            {"name": "http.server.request.duration", "kind": "histogram", "unit": "s", "description": "",
             "monotonic": True, "points": points},
            {"name": "python.asyncio.event_loop.blocked", "kind": "sum", "unit": "", "description": "",
             "monotonic": True, "points": [{"attributes": {}, "value": blocked}]},
            {"name": "process.cpu.time", "kind": "sum", "unit": "s", "description": "",
             "monotonic": True, "points": [{"attributes": {"cpu.mode": "user"}, "value": cpu}]},
        ]
    )  # fmt: skip
    return merged


def _sampler(tmp_path: Path, states: list[Merged], **kwargs: Any) -> DashboardSampler:
    feed = iter(states)
    sampler = DashboardSampler(tmp_path, 5.0, merge=lambda _: next(feed), **kwargs)
    for i in range(len(states)):
        sampler.sample(now=1000.0 + 5 * i)
    return sampler


def test_quantiles_interpolate_within_buckets_like_prometheus() -> None:
    """p50 of 10 requests in (0, 10 ms] is 5 ms; the +Inf bucket answers its lower edge; none gives None."""
    assert quantile(0.5, BOUNDS, [10, 0, 0, 0]) == pytest.approx(0.005)
    assert quantile(0.99, BOUNDS, [0, 0, 0, 4]) == 1.0
    assert quantile(0.5, BOUNDS, [0, 0, 0, 0]) is None


def test_rates_errors_and_latency_per_route_from_sampled_deltas(tmp_path: Path) -> None:
    """Three samples 5 s apart: each step shows the requests, failures and quantiles of its own interval."""
    sampler = _sampler(
        tmp_path,
        [
            _merged({("/a", 200): [0, 0, 0, 0]}),
            _merged({("/a", 200): [10, 0, 0, 0], ("/b", 500): [0, 0, 5, 0]}, blocked=1, cpu=0.5),
            _merged({("/a", 200): [10, 20, 0, 0], ("/b", 500): [0, 0, 5, 0]}, blocked=3, cpu=1.0),
        ],
    )
    intervals, routes = sampler.snapshot()
    assert routes == ["GET /a", "GET /b"]
    doc = build(intervals, routes, sampler.bounds, sampler.lag_bounds, 1010.0, 300, 60, 5.0, None)
    assert doc["step_s"] == 5.0
    a, b, overall = doc["by_route"]["GET /a"], doc["by_route"]["GET /b"], doc["overall"]
    assert [v for v in a["rate"] if v is not None] == [2.0, 4.0]
    assert [v for v in b["errors"] if v is not None] == [1.0, 0.0]
    assert [v for v in overall["rate"] if v is not None] == [3.0, 4.0]
    assert [v for v in a["p50"] if v is not None] == [5.0, pytest.approx(55.0)]
    assert overall["window"] == {
        "requests": 35,
        "failed": 5,
        "error_ratio": pytest.approx(5 / 35, abs=1e-4),
        "p50": pytest.approx(43.75),  # rank 17.5: 10 ms + 90 ms * 7.5/20
        "p95": pytest.approx(685.0),
        "p99": pytest.approx(937.0),
    }
    assert [v for v in doc["loop"]["blocked"] if v is not None] == [1, 2]
    assert [v for v in doc["process"]["cpu_percent"] if v is not None] == [10.0, 10.0]


def test_routes_past_the_limit_are_counted_as_other(tmp_path: Path) -> None:
    """With room for two routes, the third and later share one `other` row; nothing is lost from the total."""
    state = {(f"/r{i}", 200): [1, 0, 0, 0] for i in range(4)}
    sampler = _sampler(tmp_path, [_merged({}), _merged(state)], max_routes=2)
    intervals, routes = sampler.snapshot()
    assert routes == ["GET /r0", "GET /r1", OTHER]
    assert intervals[-1].routes[OTHER].requests == 2


@pytest.fixture
def admin_port(tmp_path: Path) -> Iterator[int]:
    sampler = _sampler(tmp_path, [_merged({}), _merged({("/a", 200): [1, 0, 0, 0]})])
    for path, handler in handlers(sampler, "svc").items():
        admin.add_route(path, handler)
    server = start_admin_server("127.0.0.1", 0, CollectorRegistry())
    assert server is not None
    try:
        yield server.port
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("window=7m", "window"),
        ("window=-5m", "window"),
        ("points=-1", "points"),
        ("points=999999999999999999999", "points"),
        ("points=1e3", "points"),
        ("points=", "points"),
        ("route=GET%20/nope", "route"),
        ("route=" + "x" * 5000, "route"),
        ("window=5m&window=15m", "window"),
        ("since=10", "since"),
        ("a&&&=b", "query"),
    ],
)
def test_bad_parameters_get_a_400_naming_them(admin_port: int, query: str, parameter: str) -> None:
    """Unknown route or window, negative, huge or malformed numbers: 400 with the parameter's name, never 500."""
    response = httpx.get(f"http://127.0.0.1:{admin_port}/kit/dashboard.json?{query}", timeout=5)
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter


def test_the_page_its_script_and_data_are_served(admin_port: int) -> None:
    """/kit/ and /kit/dashboard serve the page that loads the packaged script; a route filter narrows the data."""
    base = f"http://127.0.0.1:{admin_port}"
    for path in ("/kit/", "/kit/dashboard"):
        page = httpx.get(base + path, timeout=5)
        assert page.status_code == 200 and '<script src="dashboard.js">' in page.text
    script = httpx.get(base + "/kit/dashboard.js", timeout=5)
    assert script.status_code == 200 and "class KitChart" in script.text
    assert "http://" not in script.text and "https://" not in script.text  # nothing from elsewhere
    doc = httpx.get(base + "/kit/dashboard.json?window=15m&points=30&route=GET%20/a", timeout=5).json()
    assert list(doc["by_route"]) == ["GET /a"] and doc["window_s"] == 900


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False)],
)
def test_loopback_decision(address: str, loopback: bool) -> None:
    """Only loopback addresses count as local; the wildcard binds are reachable from the network."""
    assert is_loopback(address) is loopback


def _status(port: int, path: str, token: str = "") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=5).status_code


def _serve(host: str, **kwargs: Any) -> AdminServer:
    admin.add_route("/kit/probe", lambda query: (200, "text/plain", b"page\n"))
    server = start_admin_server(host, 0, CollectorRegistry(), **kwargs)
    assert server is not None
    return server


def test_pages_closed_on_a_wildcard_bind_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    """Bound on 0.0.0.0 with no token: /metrics and /healthz answer, pages get 403, start-up says how to open."""
    server = _serve("0.0.0.0")
    try:
        assert [_status(server.port, p) for p in ("/metrics", "/healthz", "/kit/probe", "/kit/")] == [
            200,
            200,
            403,
            403,
        ]
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert err.count("OTEL_ASGI_KIT_PAGES_PUBLIC=true") == 1 and "OTEL_ASGI_KIT_ADMIN_TOKEN" in err


def test_pages_open_on_loopback_with_a_token_or_when_made_public(capsys: pytest.CaptureFixture[str]) -> None:
    """127.0.0.1 serves the pages; 0.0.0.0 does with the token (401 without) or with the explicit opt-in."""
    local = _serve("127.0.0.1")
    public = _serve("0.0.0.0", pages_public=True)
    tokened = _serve("0.0.0.0", token="s3cret")
    try:
        assert _status(local.port, "/kit/probe") == 200
        assert _status(public.port, "/kit/probe") == 200
        assert _status(tokened.port, "/kit/probe") == 401
        assert _status(tokened.port, "/kit/probe", token="s3cret") == 200
    finally:
        for server in (local, public, tokened):
            server.stop()
    assert "OTEL_ASGI_KIT_PAGES_PUBLIC" not in capsys.readouterr().err


def test_a_failing_merge_is_reported_once_and_sampling_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot merge that raises: one line on stderr, the thread keeps sampling, later samples land."""
    calls = {"n": 0}

    def merge(_: Path) -> Merged:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise OSError("disk gone")
        return _merged({("/a", 200): [calls["n"], 0, 0, 0]})

    sampler = DashboardSampler(tmp_path, 0.2, merge=merge)
    sampler.start()
    try:
        deadline = time.monotonic() + 10
        while not sampler.snapshot()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sampler.stop()
    assert sampler.snapshot()[0], "no interval was sampled after the failures"
    assert capsys.readouterr().err.count("disk gone") == 1


def test_a_dashboard_that_cannot_start_leaves_the_rest_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The packaged script missing: install_dashboard reports once and returns None instead of raising."""
    from otel_asgi_kit.pages import dashboard

    def missing(sampler: DashboardSampler, service: str) -> dict[str, admin.Page]:
        raise FileNotFoundError("dashboard.js")

    monkeypatch.setattr(dashboard, "handlers", missing)
    assert dashboard.install_dashboard(tmp_path, 1.0, "svc") is None
    assert "starting the dashboard" in capsys.readouterr().err
