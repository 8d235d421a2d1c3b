"""aiohttp.web under the kit: real run_app, AppRunner, ``python -m aiohttp.web`` and gunicorn processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.otlp_receiver import OtlpReceiver, Span, wait_for
from tests.support.servers import ROOT, free_port, kit_env, run_server, stop

pytestmark = pytest.mark.server

SERVER_KIND = 2
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
COUNT = "http_server_request_duration_seconds_count"
# (server, app, workers): web.run_app in the script, and gunicorn's aiohttp worker with 2 workers.
RUNS = [("aiohttp", "examples/aiohttp_app.py", 1), ("gunicorn-aiohttp", "examples.aiohttp_app:app", 2)]


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _trace_id(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def _metric_lines(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] not in "#"}


def _count(lines: dict[str, float], route: str, status: int) -> float:
    return sum(
        v
        for k, v in lines.items()
        if k.startswith(COUNT + "{") and f'http_route="{route}"' in k and f'http_response_status_code="{status}"' in k
    )


@pytest.mark.parametrize(("server", "app", "workers"), RUNS)
def test_tutorial_app(server: str, app: str, workers: int, receiver: OtlpReceiver) -> None:
    """One SERVER span per request named by the route, exact counts, linked logs, trace header, one WS span."""
    extra = ("--access-logfile", "-") if server.startswith("gunicorn") else ()
    env = kit_env(receiver.endpoint, OTEL_METRICS_EXPORTER="prometheus,otlp")
    with run_server(server, app, env, workers=workers, extra_args=extra) as srv:
        base = srv.base_url
        with httpx.Client(base_url=base) as client:
            items = [client.get(f"/items/{i}") for i in range(7)]
            test = client.get("/test")
            failed = client.get("/test1")
            mounted = client.get("/v1/items/3")
            missing = client.get("/nope")
            child = client.get("/items/8", headers={"traceparent": PARENT})
            streamed = client.get("/stream", params={"chunks": "4"})
            health = client.get("/health")
        with connect(base.replace("http://", "ws://") + "/ws/lobby") as ws:
            ws_trace = ws.response.headers["traceresponse"].split("-")[1]
            for i in range(5):
                ws.send(f"message {i}")
                assert ws.recv(timeout=5) == f"message {i}"
        responses = [*items, test, failed, mounted, missing, child, streamed]
        assert [r.status_code for r in responses] == [200] * 7 + [200, 500, 200, 404, 200, 200]
        assert failed.json() == {"error": "boom"}  # the app's own error middleware answered
        assert len(streamed.content) == 400
        assert all("traceresponse" in r.headers for r in responses)
        assert health.json() == {"status": "ok"} and "traceresponse" not in health.headers
        expected = len(responses) + 1
        spans: list[Span] = wait_for(lambda: len(receiver.spans()) >= expected and receiver.spans())
        wait_for(lambda: [r for r in receiver.logs() if r.body == "request failed"])
        logs = receiver.logs()
        metrics = wait_for(
            lambda: (
                (text := httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text)
                and _count(_metric_lines(text), "/items/{item_id}", 200) >= 8
                and "websocket_server_connection_duration_seconds_count" in text
                and text
            ),
            timeout=15,
        )
        stdout = srv.stdout()

    assert len(spans) == expected, sorted(s.name for s in spans)  # one per request, none for /health
    assert all(s.kind == SERVER_KIND for s in spans)
    by_trace = {s.trace_id: s for s in spans}
    names = {t: s.name for t, s in by_trace.items()}
    assert [names[_trace_id(r)] for r in items] == ["GET /items/{item_id}"] * 7
    assert names[_trace_id(test)] == "GET /test"
    assert names[_trace_id(mounted)] == "GET /v1/items/{item_id}"
    assert names[_trace_id(missing)] == "GET"
    assert names[_trace_id(streamed)] == "GET /stream"
    assert "http.route" not in by_trace[_trace_id(missing)].attributes
    assert by_trace[_trace_id(missing)].status_code != 2  # a 404 is not an error
    assert by_trace[_trace_id(items[0])].attributes["http.route"] == "/items/{item_id}"
    assert _trace_id(child) == "0af7651916cd43dd8448eb211c80319c"
    assert by_trace[_trace_id(child)].parent_span_id == "b7ad6b7169203331"

    # The error middleware's JSON 500 still marks the span as an error.
    failed_span = by_trace[_trace_id(failed)]
    assert failed_span.status_code == 2
    assert failed_span.attributes["error.type"] == "500"
    assert failed_span.attributes["http.response.status_code"] == 500

    # One span for the whole WebSocket session, its messages counted.
    ws_span = by_trace[ws_trace]
    assert ws_span.name == "WS /ws/{room}"
    assert ws_span.attributes["websocket.messages.received"] == 5
    assert ws_span.attributes["websocket.messages.sent"] == 5

    # Counts per route, exact across workers.
    lines = _metric_lines(metrics)
    assert _count(lines, "/items/{item_id}", 200) == 8
    assert _count(lines, "/test", 200) == 1
    assert _count(lines, "/test1", 500) == 1
    assert not any("/health" in k for k in lines if k.startswith(COUNT))
    sent = sum(v for k, v in lines.items() if k.startswith("websocket_server_messages_total") and '"sent"' in k)
    assert sent == 5

    # Logs: the handler's line and the middleware's exception, on OTLP and stdout, in their request's trace.
    item_span = by_trace[_trace_id(items[0])]
    (handler_log,) = [r for r in logs if r.body == "looking up item 0"]
    assert (handler_log.trace_id, handler_log.span_id) == (item_span.trace_id, item_span.span_id)
    (error_log,) = [r for r in logs if r.body == "request failed"]
    assert error_log.trace_id == failed_span.trace_id
    json_lines = _json_lines(stdout)
    (line,) = [d for d in json_lines if d["message"] == "looking up item 0"]
    assert line["trace.id"] == item_span.trace_id and line["service.name"] == "shop"
    (error_line,) = [d for d in json_lines if d["message"] == "request failed"]
    assert error_line["trace.id"] == failed_span.trace_id and "boom" in error_line["error.stack_trace"]
    # aiohttp writes its access log after the handler returned: still in the request's trace, once.
    access = [d for d in json_lines if d["log.logger"].endswith(".access") and d.get("url.original") == "/items/0"]
    assert len(access) == 1
    assert access[0]["trace.id"] == item_span.trace_id
    assert access[0]["http.request.method"] == "GET" and access[0]["http.response.status_code"] == 200
    # Only run_app's own banner (its ``print``) is not a log line.
    banner = ("======== Running on", "(Press CTRL+C to quit)")
    assert all(line.startswith(("{", *banner)) for line in stdout.splitlines() if line.strip())
    assert stdout.count("looking up item 0") == 1


@pytest.mark.parametrize(
    ("server", "app"),
    [
        ("aiohttp-module", "examples.aiohttp_health_app:create_app"),
        ("aiohttp", "examples/aiohttp_health_app.py"),  # AppRunner + TCPSite
    ],
)
def test_health_app_and_uncaught_exception(server: str, app: str, receiver: OtlpReceiver) -> None:
    """``python -m aiohttp.web`` and AppRunner/TCPSite: /health untraced, a raising handler recorded with its stack."""
    with run_server(server, app, kit_env(receiver.endpoint), ready_path="/health") as srv:
        user = httpx.get(srv.base_url + "/users/42")
        failed = httpx.get(srv.base_url + "/fail")
        assert httpx.get(srv.base_url + "/health").json() == {"status": "ok"}
        spans = wait_for(lambda: len(receiver.spans()) >= 2 and receiver.spans())
        wait_for(lambda: [r for r in receiver.logs() if "Error handling request" in str(r.body)])
        logs = receiver.logs()
    assert user.status_code == 200 and failed.status_code == 500
    assert "traceresponse" in failed.headers  # aiohttp's own 500 page carries it too
    assert sorted(s.name for s in spans) == ["GET /fail", "GET /users/{user_id}"]
    (span,) = [s for s in spans if s.name == "GET /fail"]
    assert span.status_code == 2
    assert span.attributes["error.type"] == "RuntimeError"
    (event,) = [attributes for name, attributes in span.events if name == "exception"]
    assert event["exception.type"] == "RuntimeError"
    assert "boom" in event["exception.stacktrace"]
    # aiohttp's error log ("Error handling request") is in the failed request's trace.
    (error_log,) = [r for r in logs if "Error handling request" in str(r.body)]
    assert error_log.trace_id == span.trace_id == _trace_id(failed)


HOLD = {
    "OTEL_BSP_SCHEDULE_DELAY": "60000",
    "OTEL_BLRP_SCHEDULE_DELAY": "60000",
    "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    "OTEL_METRICS_EXPORTER": "prometheus,otlp",
}


@pytest.mark.parametrize(
    ("server", "app", "workers", "sig"),
    [
        ("aiohttp", "examples/aiohttp_app.py", 1, signal.SIGTERM),
        ("aiohttp", "examples/aiohttp_app.py", 1, signal.SIGINT),
        ("gunicorn-aiohttp", "examples.aiohttp_app:app", 2, signal.SIGTERM),
        ("gunicorn-aiohttp", "examples.aiohttp_app:app", 2, signal.SIGINT),
    ],
)
def test_signal_flushes_everything(server: str, app: str, workers: int, sig: int, receiver: OtlpReceiver) -> None:
    """30 requests, the last one right before the signal: 30 spans, 30 handler logs, final count 30."""
    with run_server(server, app, kit_env(receiver.endpoint, **HOLD), workers=workers) as srv:
        # One connection each (gunicorn's workers all get a share), one client: no TLS set-up per request.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=srv.base_url, timeout=10, limits=limits) as client:
            with ThreadPoolExecutor(5) as pool:
                codes = list(pool.map(lambda i: client.get(f"/items/{i}").status_code, range(29)))
            last = client.get("/items/last")
        assert receiver.spans() == []  # held back until the flush
        code = stop(srv.process, sig)
    assert codes == [200] * 29 and last.status_code == 200
    spans = [s for s in receiver.spans() if s.name == "GET /items/{item_id}"]
    assert len(spans) == 30
    assert _trace_id(last) in {s.trace_id for s in spans}
    assert len([r for r in receiver.logs() if str(r.body).startswith("looking up item")]) == 30
    assert receiver.final_count() == 30
    assert code in (0, -sig, 128 + sig)
    assert "its requests are not traced" not in srv.stderr()  # the aiohttp worker is traced: no false alarm


BUILT_BEFORE = """
import sys
from aiohttp import web
from examples.aiohttp_app import make_app

app = make_app()  # the application exists before the kit is loaded
import otel_asgi_kit

otel_asgi_kit.configure()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]))
"""

BROKEN_AIOHTTP = """
import sys
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

original = RequestHandler._handle_request
original_error = RequestHandler.handle_error

async def changed(self, request, start_time, request_handler, extra=None):  # a release that changed it
    return await original(self, request, start_time, request_handler)

def changed_error(self, request, status=500, exc=None, message=None, extra=None):
    return original_error(self, request, status, exc, message)

RequestHandler.CHANGED = CHANGED_METHOD
import otel_asgi_kit

otel_asgi_kit.configure()
from examples.aiohttp_app import app

web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]))
"""


def _run_script(code: str, receiver: OtlpReceiver, tmp_path: Path) -> tuple[httpx.Response, str, str]:
    script = tmp_path / "app.py"
    script.write_text(code)
    port = free_port()
    env = {**kit_env(receiver.endpoint, OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port())), "PYTHONPATH": str(ROOT)}
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        process = subprocess.Popen(
            [sys.executable, str(script), str(port)], cwd=ROOT, env=env, stdout=o, stderr=e, start_new_session=True
        )
    try:
        response = wait_for(lambda: _get(f"http://127.0.0.1:{port}/items/5"), timeout=30)
    finally:
        stop(process)
    return response, out.read_text(), err.read_text()


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def test_app_built_before_the_kit_is_traced(receiver: OtlpReceiver, tmp_path: Path) -> None:
    """An Application created before ``configure()`` (no launcher) is still traced, by its route."""
    response, _, _ = _run_script(BUILT_BEFORE, receiver, tmp_path)
    spans = wait_for(receiver.spans)
    assert response.status_code == 200
    assert [s.name for s in spans] == ["GET /items/{item_id}"]
    assert spans[0].trace_id == _trace_id(response)


@pytest.mark.parametrize(("method", "replacement"), [("_handle_request", "changed"), ("handle_error", "changed_error")])
def test_unknown_aiohttp_internals_leave_the_app_alone(
    receiver: OtlpReceiver, tmp_path: Path, method: str, replacement: str
) -> None:
    """If aiohttp's request path is not what the kit expects: one warning, the app serves, untraced."""
    code = BROKEN_AIOHTTP.replace("CHANGED_METHOD", replacement).replace("CHANGED", method)
    response, _, stderr = _run_script(code, receiver, tmp_path)
    assert response.status_code == 200 and response.json() == {"id": "5"}
    assert "traceresponse" not in response.headers
    warnings = [line for line in stderr.splitlines() if "aiohttp requests are not traced" in line]
    assert len(warnings) == 1, stderr
    assert f"{method} takes" in warnings[0]
    assert receiver.spans() == []


def test_blocked_loop_is_reported_in_the_request_trace(receiver: OtlpReceiver) -> None:
    """`time.sleep(0.3)` in an aiohttp handler: one blocked-loop warning in that request's trace, counted once."""
    env = kit_env(receiver.endpoint, OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL="200")
    with run_server("aiohttp", "examples/aiohttp_blocking_app.py", env) as srv:
        blocked = httpx.get(srv.base_url + "/block")
        logs = wait_for(lambda: [r for r in receiver.logs() if "event loop blocked" in str(r.body)])
        metrics = wait_for(
            lambda: (
                (text := httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text)
                and "python_asyncio_event_loop_blocked_total 1.0" in text
                and text
            ),
            timeout=10,
        )
    assert blocked.status_code == 200
    (record,) = logs
    assert record.trace_id == _trace_id(blocked)
    assert record.attributes["code.function.name"] == "block"
    assert "python_asyncio_event_loop_lag_seconds_count" in metrics
