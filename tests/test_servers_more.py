"""Granian and Daphne as real processes under `opentelemetry-instrument`, read back from a real OTLP receiver."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support.otlp_receiver import OtlpReceiver, Span, wait_for
from tests.support.servers import kit_env, run_server

pytestmark = pytest.mark.server

SERVER_KIND = 2
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
COUNT = "http_server_request_duration_seconds_count"
# Granian's query string is its own access-log atom: the kit redacts it there too.
GRANIAN_ACCESS = ("--access-log", "--access-log-fmt", '%(addr)s - "%(method)s %(path)s?%(query_string)s" %(status)d')
ACCESS_LOGGER = {"granian": "granian.access", "daphne": "daphne.access"}


def _trace_id(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def _route_count(text: str, route: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(COUNT + "{") and f'http_route="{route}"' in line
    )


@pytest.mark.parametrize(
    ("server", "workers", "extra"),
    [("granian", 1, GRANIAN_ACCESS), ("granian", 2, GRANIAN_ACCESS), ("daphne", 1, ())],
    ids=["granian", "granian-2-workers", "daphne"],
)
def test_requests_traced_and_server_logs_linked(
    server: str, workers: int, extra: tuple[str, ...], receiver: OtlpReceiver
) -> None:
    """One SERVER span per request named by route, exact totals on /metrics, the server's own log lines linked."""
    env = kit_env(receiver.endpoint, OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL="200")
    with run_server(server, "examples.starlette_app:app", env, workers=workers, extra_args=extra) as srv:
        base = srv.base_url
        item = httpx.get(base + "/items/7")
        secret = httpx.get(base + "/items/9?access_token=hunter2")
        mounted = httpx.get(base + "/v1/items/3")
        missing = httpx.get(base + "/nope")
        failed = httpx.get(base + "/fail")
        child = httpx.get(base + "/items/8", headers={"traceparent": PARENT})
        responses = [item, secret, mounted, missing, failed, child]
        assert [r.status_code for r in responses] == [200, 200, 200, 404, 500, 200]
        admin = f"http://127.0.0.1:{srv.admin_port}/metrics"
        # Every route's total at once: with two workers each publishes its own snapshot (every 200 ms), so
        # one route's count may arrive before another's (CI saw /items at 3 while the 500 was not yet in).
        expected = {"/items/{item_id}": 3, "/v1/items/{item_id}": 1, "/fail": 1}
        totals = wait_for(
            lambda: all(_route_count(text := httpx.get(admin).text, r) == n for r, n in expected.items()) and text,
            timeout=30,
        )
        assert totals, httpx.get(admin).text
        spans: list[Span] = wait_for(lambda: len(receiver.spans()) >= 6 and receiver.spans(), timeout=30)
        logs = wait_for(lambda: [r for r in receiver.logs() if "/items/7" in str(r.body)] and receiver.logs(), 30)
        if server == "daphne":
            time.sleep(2)  # Daphne's own check, once a second, would log the 500's exception a second time
        stdout = srv.stdout()
        assert "not traced" not in srv.stderr()

    assert len(spans) == 6, [s.name for s in spans]  # none for the readiness probe on /healthz
    assert all(s.kind == SERVER_KIND for s in spans)
    by_trace = {s.trace_id: s for s in spans}
    assert {t: s.name for t, s in by_trace.items()} == {
        _trace_id(item): "GET /items/{item_id}",
        _trace_id(secret): "GET /items/{item_id}",
        _trace_id(mounted): "GET /v1/items/{item_id}",
        _trace_id(missing): "GET",
        _trace_id(failed): "GET /fail",
        _trace_id(child): "GET /items/{item_id}",
    }
    assert by_trace[_trace_id(child)].parent_span_id == "b7ad6b7169203331"
    assert by_trace[_trace_id(failed)].status_code == 2
    assert _route_count(totals, "/nope") == 0  # an unmatched path is no route: no series of its own

    item_trace = _trace_id(item)
    # Every stdout line went through the kit's JSON formatter, the server's own included.
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    (handler,) = [d for d in lines if d["message"] == "looking up item 7"]
    assert handler["trace.id"] == item_trace
    access = [d for d in lines if d["log.logger"] == ACCESS_LOGGER[server]]
    (item_access,) = [d for d in access if "/items/7" in d["message"]]
    assert item_access["trace.id"] == item_trace  # written after the app returned, still linked
    assert (item_access["url.original"], item_access["http.request.method"]) == ("/items/7", "GET")
    assert item_access["http.response.status_code"] == 200 and item_access["client.address"] == "127.0.0.1"
    assert [d.get("trace.id") for d in access if "/fail" in d["message"]] == [_trace_id(failed)]
    (secret_access,) = [d for d in access if "/items/9" in d["message"]]
    assert "access_token=REDACTED" in secret_access["message"] and "hunter2" not in stdout
    assert secret_access["url.original"] == "/items/9?access_token=REDACTED"
    assert any(d["log.logger"].startswith(server if server == "daphne" else "_granian") for d in lines)
    # The same access line reached the OTLP receiver with the trace id.
    (otlp_access,) = [r for r in logs if "/items/7" in str(r.body) and "looking" not in str(r.body)]
    assert otlp_access.trace_id == item_trace
    # The 500's error line, once, with its stack, under the failed request's trace id.
    errors = [d for d in lines if d["log.level"] == "error" and "boom" in d.get("error.message", d["message"])]
    assert len(errors) == 1, errors
    assert errors[0]["trace.id"] == _trace_id(failed)
    # Daphne's line has the exception (the kit's ECS fields); Granian writes the traceback into its message.
    assert "RuntimeError" in errors[0].get("error.stack_trace", errors[0]["message"])
