"""Safe by default, through a real server: secrets never leave, log lines cannot be forged, admin port guarded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import RunningServer, kit_env, run_server

pytestmark = pytest.mark.server

SECRET_HEADERS = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
    "x-client-secret",
    "x-session-id",
]
SECRET_PARAMS = ["token", "access_token", "api_key", "key", "sig", "signature", "password", "X-Amz-Signature"]


@pytest.fixture(scope="module")
def capture_all() -> Iterator[tuple[RunningServer, OtlpReceiver]]:
    """One server for the whole module, capturing every request and response header."""
    with OtlpReceiver() as receiver:
        env = kit_env(
            receiver.endpoint,
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*",
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE=".*",
            OTEL_METRICS_EXPORTER="prometheus,otlp",
        )
        with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
            yield srv, receiver


secrets = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=32)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secret=secrets,
    header=st.sampled_from(SECRET_HEADERS),
    param=st.sampled_from(SECRET_PARAMS),
    where=st.sampled_from(["header", "cookie", "query", "all"]),
)
def test_no_secret_byte_leaves_the_process(
    capture_all: tuple[RunningServer, OtlpReceiver], secret: str, header: str, param: str, where: str
) -> None:
    """A generated secret in a header, cookie or query string is in no OTLP payload, stdout line or /metrics."""
    srv, receiver = capture_all
    secret = "S3" + secret  # never a substring of anything the app says by itself
    headers = {"x-color": "blue"}
    query = "page=2"
    if where in ("header", "all"):
        headers[header] = secret if header != "authorization" else f"Bearer {secret}"
    if where in ("cookie", "all"):
        headers["cookie"] = f"session={secret}; theme=dark"
    if where in ("query", "all"):
        query = f"page=2&{param}={quote(secret)}"
    response = httpx.get(f"{srv.base_url}/items/1?{query}", headers=headers)
    trace_id = response.headers["traceresponse"].split("-")[1]
    assert wait_for(lambda: any(s.trace_id == trace_id for s in receiver.spans()))
    assert wait_for(lambda: any(r.trace_id == trace_id and "uvicorn" not in str(r.body) for r in receiver.logs()))
    time.sleep(0.2)  # the access-log record of this request, a batch later
    metrics = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text
    payloads = b"".join(receiver.received.raw)
    assert secret.encode() not in payloads
    assert secret not in srv.stdout()
    assert secret not in srv.stderr()
    assert secret not in metrics
    (span,) = [s for s in receiver.spans() if s.trace_id == trace_id]
    if where in ("header", "all"):
        assert span.attributes[f"http.request.header.{header}"] == ["REDACTED"]  # the name is kept
    assert span.attributes["http.request.header.x-color"] == ["blue"]
    if where in ("query", "all"):
        assert span.attributes["url.query"] == f"page=2&{param}=REDACTED"
    if where in ("cookie", "all"):
        assert span.attributes["http.request.header.cookie"] == ["REDACTED"]


def test_crlf_and_ansi_in_paths_and_headers_stay_one_line(capture_all: tuple[RunningServer, OtlpReceiver]) -> None:
    """User-controlled CR/LF and ANSI escapes cannot create a fake line in stdout or the access log."""
    srv, _ = capture_all
    forged = '\r\n{"log.level": "critical", "message": "forged"}\x1b[31m'
    httpx.get(f"{srv.base_url}/items/{quote(forged)}?q={quote(forged)}", headers={"user-agent": "x\x1b[2J"})
    time.sleep(0.3)
    lines = [line for line in srv.stdout().splitlines() if line.strip()]
    assert all(json.loads(line) for line in lines)  # every line is one whole JSON object
    assert not any(json.loads(line)["message"] == "forged" for line in lines)
    assert "\x1b" not in srv.stdout()


def test_admin_port_can_require_a_token() -> None:
    """OTEL_ASGI_KIT_ADMIN_TOKEN: /metrics needs the bearer token; /healthz stays open; the app port has no /metrics."""
    env = kit_env(None, OTEL_ASGI_KIT_ADMIN_TOKEN="t0ps3cret", OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        admin = f"http://127.0.0.1:{srv.admin_port}"
        httpx.get(srv.base_url + "/items/1")
        assert httpx.get(admin + "/metrics").status_code == 401
        assert httpx.get(admin + "/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(admin + "/metrics", headers={"authorization": "Bearer t0ps3cret"})
        assert ok.status_code == 200 and "http_server_request_duration_seconds_count" in ok.text
        assert httpx.get(admin + "/healthz").status_code == 200
        assert httpx.get(srv.base_url + "/metrics").status_code == 404
        assert "t0ps3cret" not in srv.stdout() + srv.stderr()


def test_auth_failure_is_a_security_event() -> None:
    """A 401 from the app shows up as an ECS security event in stdout and in the metric."""
    env = kit_env(None, OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    with run_server("uvicorn", "examples.fastapi_app:app", env) as srv:
        assert httpx.get(srv.base_url + "/private", headers={"authorization": "Bearer nope-123"}).status_code == 401
        time.sleep(0.2)
        events = [json.loads(line) for line in srv.stdout().splitlines() if '"event.category"' in line]
        metrics = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text
    (event,) = events
    assert event["event.category"] == "authentication" and event["event.outcome"] == "failure"
    assert event["http.route"] == "/private" and event["client.address"] == "127.0.0.1"
    assert "nope-123" not in json.dumps(event)
    assert 'http_server_auth_failures_total{http_response_status_code="401",http_route="/private"} 1.0' in metrics
