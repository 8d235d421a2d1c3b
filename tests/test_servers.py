"""Real server processes under `opentelemetry-instrument`, read back from a real OTLP receiver."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.support.otlp_receiver import OtlpReceiver, Span, wait_for
from tests.support.servers import BIN, ROOT, free_port, kit_env, run_server, stop

pytestmark = pytest.mark.server

FRAMEWORKS = ["fastapi", "starlette", "litestar", "quart", "nexios", "bare"]
SERVERS = ["uvicorn", "hypercorn", "gunicorn"]
# Frameworks that route inside one ASGI callable: two servers keep the run short.
ROUTING_INSIDE = ["django", "falcon", "blacksheep"]
CASES = [(f, s) for f in FRAMEWORKS for s in SERVERS] + [
    (f, s) for f in ROUTING_INSIDE for s in ("uvicorn", "hypercorn")
]
# Granian and Daphne load the app their own way (Starlette under them: test_servers_more.py).
CASES += [("django", "granian"), ("django", "daphne")]
# Servers that write an access log only when asked; the kit keeps a server's choice.
ACCESS_LOG_ARGS = {"gunicorn": ("--access-logfile", "-"), "granian": ("--access-log",)}
SERVER_KIND = 2  # SpanKind.SERVER in OTLP
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _trace_id(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


@pytest.mark.parametrize(("framework", "server"), CASES)
def test_framework_under_server(framework: str, server: str, receiver: OtlpReceiver) -> None:
    """One correct SERVER span per request, trace header, JSON stdout and OTLP logs tied to it."""
    extra = ACCESS_LOG_ARGS.get(server, ())
    with run_server(server, f"examples.{framework}_app:app", kit_env(receiver.endpoint), extra_args=extra) as srv:
        # A connection each: servers close a keep-alive connection after an app error.
        base = srv.base_url
        item = httpx.get(base + "/items/7")
        mounted = httpx.get(base + "/v1/items/3")
        missing = httpx.get(base + "/nope")
        failed = httpx.get(base + "/fail")
        child = httpx.get(base + "/items/8", headers={"traceparent": PARENT})
        health = httpx.get(base + "/healthz")
        responses = [item, mounted, missing, failed, child]
        assert [r.status_code for r in responses] == [200, 200, 404 if framework != "bare" else 200, 500, 200]
        assert all("traceresponse" in r.headers for r in responses)
        assert "traceresponse" not in health.headers
        spans: list[Span] = wait_for(lambda: len(receiver.spans()) >= 5 and receiver.spans())
        logs = wait_for(lambda: [r for r in receiver.logs() if "looking up item 7" in str(r.body)] and receiver.logs())
        stdout = srv.stdout()
        assert "not traced" not in srv.stderr()  # no false alarm from the never-silently-off checks

    assert len(spans) == 5, [s.name for s in spans]  # exactly one per request, none for /healthz
    assert all(s.kind == SERVER_KIND for s in spans)
    by_trace = {s.trace_id: s for s in spans}
    assert set(by_trace) == {_trace_id(r) for r in responses}
    routed = framework != "bare"
    expect = {
        _trace_id(item): "GET /items/{item_id}" if routed else "GET",
        _trace_id(mounted): "GET /v1/items/{item_id}" if routed else "GET",
        _trace_id(missing): "GET",
        _trace_id(failed): "GET /fail" if routed else "GET",
        _trace_id(child): "GET /items/{item_id}" if routed else "GET",
    }
    assert {t: s.name for t, s in by_trace.items()} == expect
    assert "http.route" not in by_trace[_trace_id(missing)].attributes
    failed_span = by_trace[_trace_id(failed)]
    assert failed_span.status_code == 2  # ERROR
    assert failed_span.attributes["http.response.status_code"] == 500
    assert _trace_id(child) == "0af7651916cd43dd8448eb211c80319c"
    assert by_trace[_trace_id(child)].parent_span_id == "b7ad6b7169203331"
    assert failed_span.resource["service.name"] == "shop"
    assert "service.instance.id" in failed_span.resource

    # OTLP log record of the handler, tied to its span.
    (handler_log,) = [r for r in logs if "looking up item 7" in str(r.body)]
    item_span = by_trace[_trace_id(item)]
    assert (handler_log.trace_id, handler_log.span_id) == (item_span.trace_id, item_span.span_id)

    # Stdout: JSON lines, the handler's line carries the same trace id.
    lines = _json_lines(stdout)
    (line,) = [d for d in lines if d["message"] == "looking up item 7"]
    assert line["trace.id"] == item_span.trace_id and line["span.id"] == item_span.span_id
    assert line["service.name"] == "shop" and line["log.logger"] == "shop"
    assert all("trace.id" not in d for d in lines if "startup" in d["message"].lower())
    if server != "hypercorn":  # hypercorn writes no access log unless asked to
        access = [d for d in lines if d["log.logger"].endswith(".access") and d.get("url.original") == "/items/7"]
        assert access and access[0]["trace.id"] == item_span.trace_id
    # The 500 is logged with its stack trace under the failed request's trace id.
    errors = [d for d in lines if d.get("trace.id") == failed_span.trace_id and d["log.level"] == "error"]
    assert errors, [d["message"] for d in lines if d["log.level"] == "error"]
    assert any("boom" in d.get("error.stack_trace", "") + d["message"] for d in errors)


def test_fastapi_native_telemetry_is_not_doubled(receiver: OtlpReceiver) -> None:
    """FastAPI's built-in telemetry sees the kit's providers but records no second span or stream."""
    env = kit_env(receiver.endpoint, OTEL_METRICS_EXPORTER="otlp")
    with run_server("uvicorn", "examples.fastapi_app:app", env) as srv:
        for _ in range(3):
            httpx.get(srv.base_url + "/items/1")
        wait_for(lambda: list(receiver.metric_points("http.server.request.duration")), timeout=10)
        spans = wait_for(lambda: len(receiver.spans()) >= 3 and receiver.spans())
    assert [s.name for s in spans] == ["GET /items/{item_id}"] * 3
    scopes = {
        sm.scope.name
        for request in receiver.received.metrics
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "http.server.request.duration"
    }
    assert scopes == {"otel_asgi_kit"}


def _items_count(text: str) -> str | None:
    counts = [
        line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_count") and 'http_route="/items/{item_id}"' in line
    ]
    return counts[0] if len(counts) == 1 else None


def test_prometheus_admin_port_serves_red_metrics(receiver: OtlpReceiver) -> None:
    """/metrics on the admin port shows the duration histogram by route; not on the app's port."""
    with run_server("uvicorn", "examples.starlette_app:app", kit_env(receiver.endpoint)) as srv:
        for _ in range(4):
            httpx.get(srv.base_url + "/items/1")
        admin = f"http://127.0.0.1:{srv.admin_port}"
        # A request is counted just after its last byte went out: the client may ask first.
        text = wait_for(lambda: _items_count(t := httpx.get(admin + "/metrics").text) == "4.0" and t, timeout=10)
        assert text, httpx.get(admin + "/metrics").text
        assert httpx.get(admin + "/healthz").status_code == 200
        assert httpx.get(srv.base_url + "/metrics").status_code == 404
    series = [
        line
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_count") and 'http_route="/items/{item_id}"' in line
    ]
    assert len(series) == 1 and series[0].endswith(" 4.0")
    assert "target_info{" in text and "otel_scope_name" not in text


def test_bad_values_are_named_and_the_app_serves(receiver: OtlpReceiver) -> None:
    """Invalid settings print one line each (secrets hidden) and the app still serves and traces."""
    env = kit_env(
        receiver.endpoint,
        OTEL_TRACES_SAMPLER_ARG="abc",
        OTEL_BSP_MAX_QUEUE_SIZE="lots",
        OTEL_EXPORTER_OTLP_HEADERS="token-hunter2",
    )
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        assert httpx.get(srv.base_url + "/items/1").status_code == 200
        spans = wait_for(receiver.spans)
        stderr = srv.stderr()
    assert "OTEL_TRACES_SAMPLER_ARG='abc' is not a number between 0 and 1" in stderr
    assert "OTEL_BSP_MAX_QUEUE_SIZE='lots' is not a whole number" in stderr
    assert "OTEL_EXPORTER_OTLP_HEADERS=<hidden>" in stderr
    assert "hunter2" not in stderr + srv.stdout()
    assert [s.name for s in spans] == ["GET /items/{item_id}"]


def test_sdk_disabled_leaves_the_app_alone(receiver: OtlpReceiver) -> None:
    """OTEL_SDK_DISABLED=true: no spans, no trace header, the app serves."""
    env = kit_env(receiver.endpoint, OTEL_SDK_DISABLED="true")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        response = httpx.get(srv.base_url + "/items/1")
    assert response.status_code == 200
    assert "traceresponse" not in response.headers
    assert receiver.spans() == []


def test_log_correlation_variable_adds_no_duplicate_lines(receiver: OtlpReceiver) -> None:
    """OTEL_PYTHON_LOG_CORRELATION with the logging instrumentation installed: each line once."""
    env = kit_env(receiver.endpoint, OTEL_PYTHON_LOG_CORRELATION="true")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        httpx.get(srv.base_url + "/items/1")
        wait_for(lambda: [r for r in receiver.logs() if "looking up item 1" in str(r.body)])
        stdout = srv.stdout()
    assert stdout.count("looking up item 1") == 1
    assert len([r for r in receiver.logs() if "looking up item 1" in str(r.body)]) == 1
    assert all(line.startswith("{") for line in stdout.splitlines() if line.strip())


def test_programmatic_path_without_the_launcher(receiver: OtlpReceiver) -> None:
    """configure() and instrument() twice each: one span per request, JSON logs."""
    port = free_port()
    env = kit_env(receiver.endpoint, OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port()))
    process = subprocess.Popen(
        [sys.executable, "examples/programmatic.py", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _reachable(base + "/healthz"), timeout=20)
        response = httpx.get(base + "/items/9")
        spans = wait_for(receiver.spans)
    finally:
        stop(process)
    assert response.status_code == 200
    assert [s.name for s in spans] == ["GET /items/{item_id}"]
    assert spans[0].trace_id == _trace_id(response)


def _reachable(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def test_entry_points_are_registered() -> None:
    """opentelemetry-instrument finds the kit's distro and configurator with no flags."""
    code = (
        "from opentelemetry.util._importlib_metadata import entry_points;"
        "print(sorted(e.name for e in entry_points(group='opentelemetry_distro')),"
        "sorted(e.name for e in entry_points(group='opentelemetry_configurator')))"
    )
    out = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, check=True).stdout
    assert "otel_asgi_kit" in out.split("]")[0] and "otel_asgi_kit" in out.split("]")[1]


@pytest.mark.parametrize(("server", "args"), [("uvicorn", ("--no-access-log",)), ("gunicorn", ())])
def test_no_access_log_stays_off(server: str, args: tuple[str, ...], receiver: OtlpReceiver) -> None:
    """A server told to write no access log (uvicorn --no-access-log, gunicorn by default) writes none with the kit."""
    with run_server(
        "uvicorn", "examples.starlette_app:app", kit_env(receiver.endpoint), extra_args=("--no-access-log",)
    ) as srv:
        httpx.get(srv.base_url + "/items/3")
        wait_for(lambda: [r for r in receiver.logs() if "looking up item 3" in str(r.body)])
        stdout = srv.stdout()
    assert "looking up item 3" in stdout
    assert '"uvicorn.access"' not in stdout
    assert not [r for r in receiver.logs() if "GET /items/3 HTTP" in str(r.body)]
