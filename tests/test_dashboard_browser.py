"""The dashboard in a real browser while traffic runs: charts per route fill up, clicks lead to requests."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.servers import RunningServer, kit_env, run_server
from tests.test_pages_browser import browser  # noqa: F401 - the module's Chromium fixture

pytestmark = pytest.mark.server

SCREENSHOT_COPY = Path("/tmp/kit-dashboard.png")
ROUTES = ["GET /items/{item_id}", "GET /fail", "GET"]  # "GET": the 404s, with no route


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """The Starlette example under `opentelemetry-instrument`, sampled for the dashboard twice a second."""
    env = kit_env(
        None,
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_ASGI_KIT_DASHBOARD_INTERVAL="0.5",
        OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL="200",
    )
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        yield srv


@pytest.fixture
def traffic(server: RunningServer) -> Iterator[None]:
    """Requests to three routes and one open WebSocket until the test ends (bounded at 120 s)."""
    stop = threading.Event()
    ws_url = server.base_url.replace("http://", "ws://") + "/ws/lobby"

    def run() -> None:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=server.base_url, timeout=5) as client, connect(ws_url) as ws:
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                for path in (f"/items/{i}", "/fail", "/nope"):
                    try:
                        client.get(path)
                    except httpx.HTTPError:  # a reset under load is the server's business, not this test's
                        time.sleep(0.05)
                ws.send("hi")
                ws.recv()
                i += 1
                time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def _points(page: object, canvas_id: str) -> int:
    return int(page.get_attribute(f"#{canvas_id}", "data-points") or 0)  # type: ignore[attr-defined]


def _click_point(page: object, canvas_id: str, series: int) -> None:
    """Click the newest point of one series, where the chart itself draws it."""
    x, y = page.evaluate(  # type: ignore[attr-defined]
        """([id, k]) => {
            const chart = state.charts[id];
            const sc = chart.scale(chart.layout());
            const values = chart.series[k].values;
            let i = values.length - 1;
            while (i >= 0 && values[i] === null) i--;
            const rect = chart.canvas.getBoundingClientRect();
            return [rect.left + sc.x(i), rect.top + sc.y(values[i]) - (chart.kind === "bar" ? -2 : 0)];
        }""",
        [canvas_id, series],
    )
    page.mouse.click(x, y)  # type: ignore[attr-defined]


def test_dashboard_charts_every_route_and_clicks_lead_to_requests(
    server: RunningServer,
    browser: object,  # noqa: F811
    traffic: None,
    tmp_path: Path,
) -> None:
    """Each route's rate, failure and latency charts get points; a latency point and a failure bar open requests."""
    admin_url = f"http://127.0.0.1:{server.admin_port}"
    page = browser.new_page(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
    page.goto(admin_url + "/kit/dashboard")
    assert page.title() == "Dashboard · shop"
    page.wait_for_function(f"document.querySelectorAll('section.route').length >= {len(ROUTES)}", timeout=30_000)
    sections = {
        page.locator("section.route").nth(i).get_attribute("data-route"): i
        for i in range(page.locator("section.route").count())
    }
    assert set(ROUTES) <= set(sections), sections
    # Let a few samples arrive, then every route's charts must have points.
    page.wait_for_function(
        "[...document.querySelectorAll('section.route canvas')].every(c => Number(c.dataset.points) >= 3)",
        timeout=30_000,
    )
    for route in ROUTES:
        index = sections[route]
        for chart in ("rate", "latency"):
            assert _points(page, f"route{index}-{chart}") >= 3, (route, chart)
    fail_index = sections["GET /fail"]
    page.wait_for_function(
        f"state.charts['route{fail_index}-errors'].series[0].values.some(v => v > 0)", timeout=30_000
    )
    for chart in ("overall-rate", "overall-latency", "ws-active", "ws-messages", "cpu", "memory"):
        assert _points(page, chart) >= 1, chart
    # the traffic's one WebSocket stays open: the connections chart reaches 1
    page.wait_for_function("state.charts['ws-active'].series[0].values.some(v => v >= 1)", timeout=10_000)
    summary = page.inner_text(f"section.route[data-index='{fail_index}'] .summary")
    assert "(100.00 %)" in summary, summary  # every /fail is a failure

    png = tmp_path / "kit-dashboard.png"
    page.screenshot(path=str(png), full_page=True)
    shutil.copyfile(png, SCREENSHOT_COPY)
    print(f"screenshot: {png} (copied to {SCREENSHOT_COPY})")

    items = sections["GET /items/{item_id}"]
    _click_point(page, f"route{items}-latency", 1)  # p95
    page.wait_for_url("**/kit/traces?route=GET+%2Fitems%2F%7Bitem_id%7D&min_ms=*", timeout=10_000)
    rows = page.locator("#recent + table.requests tr:has(a)")
    assert rows.count() >= 1
    assert all("GET /items/{item_id}" in rows.nth(i).inner_text() for i in range(rows.count()))
    rows.first.locator("a").click()
    page.wait_for_url("**/kit/traces?trace=*")
    assert "GET /items/{item_id}" in page.inner_text("table.spans")

    page.goto(admin_url + "/kit/dashboard")
    page.wait_for_function(
        f"state.charts['route{fail_index}-errors'] && "
        f"state.charts['route{fail_index}-errors'].series[0].values.some(v => v > 0)",
        timeout=30_000,
    )
    _click_point(page, f"route{fail_index}-errors", 0)
    page.wait_for_url("**/kit/traces?route=GET+%2Ffail&failed=1", timeout=10_000)
    failed_rows = page.locator("#recent + table.requests tr:has(a)")
    assert failed_rows.count() >= 1
    assert all("500" in failed_rows.nth(i).inner_text() for i in range(failed_rows.count()))
