"""The shipped test helpers: ``otel_asgi_kit.testing`` and the ``otel_kit`` pytest fixture."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import otel_asgi_kit
from otel_asgi_kit._state import current_instrumentation
from otel_asgi_kit.testing import capture_telemetry

pytest_plugins = ["pytester"]

_USER_APP = """
import otel_asgi_kit
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient


async def item(request):
    return JSONResponse({"id": request.path_params["item_id"]})


app = Starlette(routes=[Route("/items/{item_id}", item)])
"""


def _plugin_args() -> list[str]:
    """``-p`` until the ``pytest11`` entry point is installed; both at once would register the plugin twice."""
    installed = any(ep.value == "otel_asgi_kit.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "otel_asgi_kit.pytest_plugin"]


def _run_user_test(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=_USER_APP + body)
    return pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider")


def test_three_line_user_test_passes(pytester: pytest.Pytester) -> None:
    """The README's three-line test passes against a real Starlette app."""
    result = _run_user_test(
        pytester,
        """
def test_item(otel_kit):
    TestClient(otel_asgi_kit.instrument(app)).get("/items/1")
    otel_kit.assert_span("GET /items/{item_id}", **{"http.response.status_code": 200})
""",
    )
    result.assert_outcomes(passed=1)


def test_user_test_fails_when_the_span_is_absent(pytester: pytest.Pytester) -> None:
    """No matching span (the request hit no route) fails the user's test and names the spans seen."""
    result = _run_user_test(
        pytester,
        """
def test_item(otel_kit):
    TestClient(otel_asgi_kit.instrument(app)).get("/nothing/here")
    otel_kit.assert_span("GET /items/{item_id}", **{"http.response.status_code": 200})
""",
    )
    result.assert_outcomes(failed=1)
    assert "expected exactly one span 'GET /items/{item_id}', found 0; spans seen: ['GET']" in result.stdout.str()


def test_user_test_fails_on_a_wrong_attribute(pytester: pytest.Pytester) -> None:
    """A span with another status code than asserted fails the test, showing expected and actual."""
    result = _run_user_test(
        pytester,
        """
def test_item(otel_kit):
    TestClient(otel_asgi_kit.instrument(app)).get("/items/1")
    otel_kit.assert_span("GET /items/{item_id}", **{"http.response.status_code": 201})
""",
    )
    result.assert_outcomes(failed=1)
    assert "expected {'http.response.status_code': 201}, got {'http.response.status_code': 200}" in result.stdout.str()


def test_each_test_gets_a_fresh_capture(pytester: pytest.Pytester) -> None:
    """Spans of one test do not leak into the next."""
    result = _run_user_test(
        pytester,
        """
def test_first(otel_kit):
    TestClient(otel_asgi_kit.instrument(app)).get("/items/1")
    assert len(otel_kit.spans()) == 1


def test_second(otel_kit):
    assert otel_kit.spans() == []
""",
    )
    result.assert_outcomes(passed=2)


async def _item(request: Request) -> Response:
    logging.getLogger("shop").info("looking up item %s", request.path_params["item_id"])
    return JSONResponse({"id": request.path_params["item_id"]})


async def _fail(request: Request) -> Response:
    raise RuntimeError("boom")


def _app() -> Starlette:
    return Starlette(routes=[Route("/items/{item_id}", _item), Route("/fail", _fail)])


def test_logs_carry_the_request_trace_context() -> None:
    """A log line written by a handler is captured with the trace and span id of its request's span."""
    with capture_telemetry() as kit:
        TestClient(otel_asgi_kit.instrument(_app())).get("/items/7")
        span = kit.span("GET /items/{item_id}")
        (line,) = [log for log in kit.logs() if log.logger == "shop"]
    assert span.context is not None
    assert line.message == "looking up item 7"
    assert line.level == "INFO"
    assert line.trace_id == f"{span.context.trace_id:032x}"
    assert line.span_id == f"{span.context.span_id:016x}"


def test_metric_points_count_requests() -> None:
    """``metric_points`` returns the duration histogram with one count per request, by route."""
    with capture_telemetry() as kit:
        client = TestClient(otel_asgi_kit.instrument(_app()), raise_server_exceptions=False)
        client.get("/items/1")
        client.get("/items/2")
        client.get("/fail")
        points = kit.metric_points("http.server.request.duration")
    counts = {(p.attributes["http.route"], p.attributes["http.response.status_code"]): p.count for p in points}
    assert counts == {("/items/{item_id}", 200): 2, ("/fail", 500): 1}


def test_span_requires_exactly_one() -> None:
    """``span`` fails when the name matches two spans."""
    with capture_telemetry() as kit:
        client = TestClient(otel_asgi_kit.instrument(_app()))
        client.get("/items/1")
        client.get("/items/2")
        with pytest.raises(AssertionError, match="found 2"):
            kit.span("GET /items/{item_id}")


def test_everything_is_put_back_on_exit() -> None:
    """After the capture the middleware records with what it had before, and root logging is unchanged."""
    root = logging.getLogger()
    handlers, level, before = list(root.handlers), root.level, current_instrumentation()
    with pytest.raises(ZeroDivisionError), capture_telemetry() as kit:
        assert current_instrumentation() is kit.instrumentation
        assert kit.log_handler in root.handlers
        1 / 0
    assert current_instrumentation() is before
    assert root.handlers == handlers
    assert root.level == level
