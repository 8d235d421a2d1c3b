"""The trace pages in a real browser: a real server process, real requests, Debian's headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import RunningServer, kit_env, run_server

pytestmark = pytest.mark.server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RED = "rgb(176, 0, 32)"  # #b00020, the pages' colour for failures
SCREENSHOT_COPY = Path("/tmp/kit-pages.png")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """The Starlette example under `opentelemetry-instrument`, with no collector: the pages are the view."""
    env = kit_env(None, OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _trace_id(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def test_pages_list_requests_and_show_failures_in_red(server: RunningServer, browser: object, tmp_path: Path) -> None:
    """The request just made is listed with its trace id, the 500 is red, and its trace shows the exception."""
    ok = httpx.get(server.base_url + "/items/42")
    failed = httpx.get(server.base_url + "/fail")
    assert (ok.status_code, failed.status_code) == (200, 500)
    ok_id, failed_id = _trace_id(ok), _trace_id(failed)

    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    admin_url = f"http://127.0.0.1:{server.admin_port}"
    page.goto(admin_url + "/kit/traces")
    assert page.title() == "Traces · shop"

    recent = page.locator("#recent + table.requests")
    ok_row = recent.locator("tr", has=page.locator(f'a[href="traces?trace={ok_id}"]'))
    failed_row = recent.locator("tr", has=page.locator(f'a[href="traces?trace={failed_id}"]'))
    assert ok_row.count() == 1 and failed_row.count() == 1
    assert "GET /items/{item_id}" in ok_row.inner_text() and "/items/42" in ok_row.inner_text()
    assert "GET /fail" in failed_row.inner_text() and "500" in failed_row.inner_text()

    def color(row: object) -> str:
        return str(row.locator("td").first.evaluate("td => getComputedStyle(td).color"))  # type: ignore[attr-defined]

    assert color(failed_row) == RED
    assert color(ok_row) != RED
    failed_table = page.locator("#failed + table.requests")
    assert failed_table.locator(f'a[href="traces?trace={failed_id}"]').count() == 1
    assert failed_table.locator(f'a[href="traces?trace={ok_id}"]').count() == 0

    index_png = tmp_path / "kit-pages.png"
    page.screenshot(path=str(index_png), full_page=True)

    failed_row.locator("a").click()
    page.wait_for_url(f"**/kit/traces?trace={failed_id}")
    assert page.locator("dt:text-is('exception.message') + dd").inner_text() == "boom"
    assert page.locator("dt:text-is('error.type') + dd").inner_text() == "RuntimeError"
    assert page.locator("h3.failed").first.evaluate("h => getComputedStyle(h).color") == RED
    trace_png = tmp_path / "kit-pages-trace.png"
    page.screenshot(path=str(trace_png), full_page=True)

    page.goto(f"{admin_url}/kit/traces?trace={ok_id}")
    assert "looking up item 42" in page.inner_text("table.logs")
    assert "in a worker thread" in page.inner_text("table.logs")

    shutil.copyfile(index_png, SCREENSHOT_COPY)
    print(f"screenshots: {index_png} {trace_png} (copied to {SCREENSHOT_COPY})")
