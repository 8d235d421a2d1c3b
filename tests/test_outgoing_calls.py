"""Service A calls service B through each HTTP client: one trace, with a CLIENT span between the two SERVER spans."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version

import httpx
import pytest

from otel_asgi_kit.distro import REPLACED_INSTRUMENTORS
from tests.support.otlp_receiver import OtlpReceiver, Span, wait_for
from tests.support.servers import BIN, RunningServer, kit_env, run_server

pytestmark = pytest.mark.server

SERVER_KIND, CLIENT_KIND = 2, 3  # SpanKind in OTLP
CLIENTS = ["httpx", "aiohttp", "requests", "urllib3"]
CLIENT_PACKAGES = [
    "opentelemetry-instrumentation-httpx",
    "opentelemetry-instrumentation-aiohttp-client",
    "opentelemetry-instrumentation-requests",
    "opentelemetry-instrumentation-urllib3",
]
APP = "examples.client_app:app"


@dataclass
class Services:
    a: RunningServer
    b: RunningServer
    receiver: OtlpReceiver


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """B, then A pointed at B: two real uvicorn processes under the kit, exporting all signals to one receiver."""
    with OtlpReceiver() as receiver:
        # OTLP metrics too: no exporter's own POST may show up as a CLIENT span.
        common = {"OTEL_METRICS_EXPORTER": "prometheus,otlp"}
        with run_server("uvicorn", APP, kit_env(receiver.endpoint, OTEL_SERVICE_NAME="back", **common)) as b:
            env_a = kit_env(receiver.endpoint, OTEL_SERVICE_NAME="front", DOWNSTREAM_URL=b.base_url, **common)
            with run_server("uvicorn", APP, env_a) as a:
                yield Services(a, b, receiver)


def _one(spans: list[Span], service: str, kind: int) -> Span:
    (span,) = [s for s in spans if s.resource["service.name"] == service and s.kind == kind]
    return span


def _trace(receiver: OtlpReceiver, trace_id: str) -> list[Span]:
    return wait_for(lambda: (s := [x for x in receiver.spans() if x.trace_id == trace_id]) and len(s) >= 3 and s)


@pytest.mark.parametrize("client", CLIENTS)
def test_call_from_a_to_b_is_one_trace(client: str, services: Services) -> None:
    """A's SERVER span → A's CLIENT span → B's SERVER span, one trace id, and B received that traceparent."""
    response = httpx.get(f"{services.a.base_url}/call/{client}", timeout=10)
    assert response.status_code == 200, response.text
    trace_id = response.headers["traceresponse"].split("-")[1]
    _trace(services.receiver, trace_id)
    # A little longer: a second CLIENT span (e.g. urllib3's under requests') would arrive in the same batches.
    wait_for(lambda: len(_trace(services.receiver, trace_id)) > 3, timeout=0.5)
    spans = _trace(services.receiver, trace_id)
    kinds = sorted((s.resource["service.name"], s.kind) for s in spans)
    assert kinds == [("back", SERVER_KIND), ("front", SERVER_KIND), ("front", CLIENT_KIND)], [
        (s.name, s.kind, s.resource["service.name"]) for s in spans
    ]
    a_server, a_client = _one(spans, "front", SERVER_KIND), _one(spans, "front", CLIENT_KIND)
    b_server = _one(spans, "back", SERVER_KIND)
    assert a_server.name == "GET /call/{client}"
    assert a_server.parent_span_id == ""
    assert a_client.parent_span_id == a_server.span_id
    assert b_server.parent_span_id == a_client.span_id
    assert b_server.name == "GET /echo"
    # The current HTTP conventions, as on the kit's SERVER spans (the distro opts in).
    assert a_client.name == "GET"
    assert a_client.attributes["http.request.method"] == "GET"
    assert a_client.attributes["url.full"] == f"{services.b.base_url}/echo"
    assert a_client.attributes["http.response.status_code"] == 200
    version_, seen_trace, seen_parent, flags = response.json()["traceparent"].split("-")
    assert (version_, seen_trace, seen_parent) == ("00", trace_id, a_client.span_id)
    assert int(flags, 16) & 1  # sampled (the SDK may also set the random-trace-id flag, 0x02)


def test_exporters_make_no_client_spans(services: Services) -> None:
    """The OTLP exporters' own POSTs (requests/urllib3 underneath) are never traced: every CLIENT span is a call."""
    for client in CLIENTS:
        assert httpx.get(f"{services.a.base_url}/call/{client}", timeout=10).status_code == 200
    # Several export rounds of traces, logs and metrics go by at 100-500 ms intervals meanwhile.
    time.sleep(1.5)
    clients = [s for s in services.receiver.spans() if s.kind == CLIENT_KIND]
    calls = [s for s in services.receiver.spans() if s.kind == SERVER_KIND and s.name == "GET /call/{client}"]
    assert clients and len(clients) == len(calls), [(s.name, s.attributes) for s in clients]
    # Each call is also counted once in the client duration histogram on A's /metrics.
    counted = wait_for(lambda: _client_calls_counted(services.a) == len(calls) and len(calls), timeout=5)
    assert counted == len(calls), _client_calls_counted(services.a)


def _client_calls_counted(server: RunningServer) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.admin_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_client_request_duration_seconds_count{")
    )


def test_bootstrap_would_install_the_same_client_instrumentations() -> None:
    """`opentelemetry-bootstrap -a install` asks for exactly the installed client packages: nothing doubles."""
    wanted = subprocess.run(
        [str(BIN / "opentelemetry-bootstrap"), "-a", "requirements"], capture_output=True, text=True, check=True
    ).stdout.split()
    for package in CLIENT_PACKAGES:
        assert f"{package}=={version(package)}" in wanted, (package, wanted)
    # And the server-side instrumentors it would add are the ones the kit's distro skips.
    assert {"asgi", "fastapi", "starlette"} <= REPLACED_INSTRUMENTORS
