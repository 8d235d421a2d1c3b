"""Frameworks that route inside one ASGI callable: route templates, caught exceptions, safe fallbacks."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from opentelemetry.trace import StatusCode

from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.middleware import KitMiddleware
from tests.conftest import Telemetry, make_telemetry
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import ROOT, kit_env, run_server

FRAMEWORKS = ["django", "falcon", "blacksheep", "litestar", "quart", "nexios"]
PATHS = ["/items/7", "/v1/items/3", "/items/8", "/nope", "/fail", "/fail"]


def _app(framework: str) -> Any:
    return importlib.import_module(f"examples.{framework}_app").app


def _serve(app: Any, telemetry: Telemetry, paths: list[str]) -> list[httpx.Response]:
    """Each path through the kit's middleware around ``app``, as a server would call it."""
    install_framework_hooks()
    wrapped = KitMiddleware(app, instrumentation=telemetry.instrumentation)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=wrapped, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [await client.get(p) for p in paths]

    return asyncio.run(run())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_route_template_and_caught_exception_on_the_span(framework: str, telemetry: Telemetry) -> None:
    """METHOD route names each span; a 404 has no route; the exception the framework answered is on the span."""
    responses = _serve(_app(framework), telemetry, PATHS)
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 500, 500]
    spans = telemetry.spans.get_finished_spans()
    assert [s.name for s in spans] == [
        "GET /items/{item_id}",
        "GET /v1/items/{item_id}",
        "GET /items/{item_id}",
        "GET",
        "GET /fail",
        "GET /fail",
    ]
    assert [s.attributes.get("http.route") for s in spans] == [
        "/items/{item_id}",
        "/v1/items/{item_id}",
        "/items/{item_id}",
        None,
        "/fail",
        "/fail",
    ]
    failed = spans[4]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"
    assert failed.attributes["http.response.status_code"] == 500
    (event,) = failed.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "boom"
    assert 'raise RuntimeError("boom")' in event.attributes["exception.stacktrace"]
    assert spans[3].status.status_code is StatusCode.UNSET and "error.type" not in spans[3].attributes

    counts = {
        (
            p.attributes.get("http.route"),
            p.attributes["http.response.status_code"],
            p.attributes.get("error.type"),
        ): p.count
        for p in telemetry.points("http.server.request.duration")
    }
    assert counts == {
        ("/items/{item_id}", 200, None): 2,
        ("/v1/items/{item_id}", 200, None): 1,
        (None, 404, None): 1,
        ("/fail", 500, "RuntimeError"): 2,
    }


def test_django_cleanup_after_the_response_is_no_background_work(telemetry: Telemetry) -> None:
    """Django closes the response and sends ``request_finished`` in its worker thread after the last
    byte; however long that takes (a slow receiver here, a busy host in CI), the request has one span."""
    from django.core.signals import request_finished

    def slow_receiver(**kwargs: Any) -> None:
        time.sleep(0.2)

    request_finished.connect(slow_receiver, dispatch_uid="test.slow_receiver")
    try:
        responses = _serve(_app("django"), telemetry, ["/items/7", "/nope"])
    finally:
        request_finished.disconnect(dispatch_uid="test.slow_receiver")
    assert [r.status_code for r in responses] == [200, 404]
    spans = telemetry.spans.get_finished_spans()
    assert [s.name for s in spans] == ["GET /items/{item_id}", "GET"]
    # The span still ends at the response's last byte, not after the receiver.
    assert all(s.end_time - s.start_time < 150_000_000 for s in spans)


def test_django_regex_routes_are_templates() -> None:
    """re_path groups and path converters both become {name}; the root route is "/"."""
    from otel_asgi_kit.asgi.django import route_template

    assert route_template("items/<int:item_id>") == "/items/{item_id}"
    assert route_template("v1/items/<slug:slug>/") == "/v1/items/{slug}/"
    assert route_template(r"^old/(?P<year>[0-9]{4})/(?P<kind>(a|b))$") == "/old/{year}/{kind}"
    assert route_template("") == "/"


def test_falcon_and_blacksheep_converters_are_dropped() -> None:
    """Typed parameters of Falcon and BlackSheep patterns read as plain {name} templates."""
    from otel_asgi_kit.asgi.blacksheep import route_template as blacksheep_template
    from otel_asgi_kit.asgi.falcon import route_template as falcon_template

    assert falcon_template('/items/{item_id:int}/{when:dt("%Y")}') == "/items/{item_id}/{when}"
    assert blacksheep_template(b"/a/{int:x}/<uuid:y>/:z/<w>/{v}") == "/a/{x}/{y}/{z}/{w}/{v}"
    assert blacksheep_template(b"/static/*") == "/static/*"


def _rename_first_parameter(owner: Any, name: str) -> None:
    """``owner.name`` as a future version might have it: same behaviour, a parameter renamed."""
    original = getattr(owner, name)

    def renamed(self: Any, renamed_argument: Any, *args: Any, **kwargs: Any) -> Any:
        return original(self, renamed_argument, *args, **kwargs)

    setattr(owner, name, renamed)


def _break_django() -> None:
    import django.core.signals
    from django.core.handlers.base import BaseHandler

    _rename_first_parameter(BaseHandler, "resolve_request")
    del django.core.signals.got_request_exception


def _break_falcon() -> None:
    import falcon.asgi

    _rename_first_parameter(falcon.asgi.App, "_get_responder")
    _rename_first_parameter(falcon.asgi.App, "_handle_exception")


def _break_blacksheep() -> None:
    from blacksheep.server.application import Application
    from blacksheep.server.routing import RouteMatch

    RouteMatch.__slots__ = ("handler",)  # type: ignore[misc]
    _rename_first_parameter(Application, "handle_request_handler_exception")


def _break_quart() -> None:
    import quart.ctx
    import quart.signals

    for name in ("_BaseRequestWebsocketContext", "AppContext"):
        if hasattr(quart.ctx, name):
            delattr(quart.ctx, name)
    del quart.signals.got_request_exception


def _break_nexios() -> None:
    from nexios.middleware.errors.server_error_handler import ServerErrorMiddleware
    from nexios.routing.router import Route

    _rename_first_parameter(Route, "handle")
    _rename_first_parameter(ServerErrorMiddleware, "__call__")


def _break_litestar() -> None:
    from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware

    _rename_first_parameter(ExceptionHandlerMiddleware, "handle_request_exception")


BREAKS = {
    "litestar": _break_litestar,
    "django": _break_django,
    "falcon": _break_falcon,
    "blacksheep": _break_blacksheep,
    "quart": _break_quart,
    "nexios": _break_nexios,
}


def serve_broken(framework: str) -> None:
    """In a fresh interpreter: the app imported, then broken as an unknown version would be, then served."""
    app = _app(framework)  # first: hooks install only for frameworks in use
    BREAKS[framework]()
    telemetry = make_telemetry()
    install_framework_hooks()  # installed twice: still one warning each
    responses = _serve(app, telemetry, ["/items/7", "/items/8"])
    names = [s.name for s in telemetry.spans.get_finished_spans()]
    print(json.dumps({"status": [r.status_code for r in responses], "names": names}))


@pytest.mark.parametrize(
    ("framework", "warnings", "name"),
    [
        ("django", ["naming Django routes", "recording Django's caught exceptions"], "GET"),
        ("falcon", ["naming Falcon routes", "recording Falcon's caught exceptions"], "GET"),
        ("blacksheep", ["naming BlackSheep routes", "recording BlackSheep's caught exceptions"], "GET"),
        ("quart", ["naming Quart routes", "recording Quart's caught exceptions"], "GET"),
        ("nexios", ["naming Nexios routes", "recording Nexios's caught exceptions"], "GET"),
        # Litestar's route needs no hook: only the exception hook is lost.
        ("litestar", ["recording Litestar's caught exceptions"], "GET /items/{item_id}"),
    ],
)
def test_missing_framework_piece_means_no_route_and_one_warning(framework: str, warnings: list[str], name: str) -> None:
    """A framework version without what a hook relies on: the app serves, spans lack the route, one line each."""
    code = f"from tests.test_framework_hooks import serve_broken; serve_broken({framework!r})"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result == {"status": [200, 200], "names": [name, name]}
    kit_lines = [line for line in run.stderr.splitlines() if line.startswith("otel_asgi_kit:")]
    assert len(kit_lines) == len(warnings), kit_lines
    for warning in warnings:
        assert sum(warning in line for line in kit_lines) == 1, kit_lines


_COUNT = re.compile(r"^http_server_request_duration_seconds_count\{(?P<labels>.*)\} (?P<value>[0-9.e+]+)$")


def _route_counts(metrics_text: str) -> dict[tuple[str | None, str, str | None], float]:
    """(route, status, error type) → request count, from the Prometheus text of the admin port."""
    counts = {}
    for line in metrics_text.splitlines():
        found = _COUNT.match(line)
        if found:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"]))
            key = (
                labels.get("http_route") or None,
                labels["http_response_status_code"],
                labels.get("error_type") or None,
            )
            counts[key] = float(found["value"])
    return counts


@pytest.mark.server
@pytest.mark.parametrize("framework", ["django", "falcon", "blacksheep"])
def test_under_uvicorn_metrics_by_route_and_the_caught_exception(framework: str, receiver: OtlpReceiver) -> None:
    """A real server: exact counts by route on /metrics; the exception the framework answered is on its span."""
    with run_server("uvicorn", f"examples.{framework}_app:app", kit_env(receiver.endpoint)) as srv:
        statuses = [httpx.get(srv.base_url + p).status_code for p in PATHS]
        text = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text
        spans = wait_for(lambda: len(receiver.spans()) >= len(PATHS) and receiver.spans())
        logs = wait_for(
            lambda: len([r for r in receiver.logs() if "looking up item" in str(r.body)]) >= 3 and receiver.logs()
        )
        stderr = srv.stderr()
    assert statuses == [200, 200, 200, 404, 500, 500]
    assert _route_counts(text) == {
        ("/items/{item_id}", "200", None): 2.0,
        ("/v1/items/{item_id}", "200", None): 1.0,
        (None, "404", None): 1.0,
        ("/fail", "500", "RuntimeError"): 2.0,
    }
    failed = [s for s in spans if s.name == "GET /fail"]
    assert len(failed) == 2 and len(spans) == len(PATHS)
    for span in failed:
        assert span.status_code == 2 and span.attributes["error.type"] == "RuntimeError"
        ((name, event),) = span.events
        assert (
            name == "exception" and event["exception.type"] == "RuntimeError" and event["exception.message"] == "boom"
        )
        assert "RuntimeError: boom" in event["exception.stacktrace"]
    # Django runs /items/ (a sync view) in a worker thread and /v1/items/ (async) on the loop: both logs are tied.
    by_id = {s.span_id: s for s in spans}
    for record in [r for r in logs if "looking up item" in str(r.body)]:
        span = by_id[record.span_id]
        assert span.trace_id == record.trace_id and span.attributes["url.path"].endswith(str(record.body)[-1])
    assert "Invalid type" not in stderr and "otel_asgi_kit:" not in stderr, stderr
