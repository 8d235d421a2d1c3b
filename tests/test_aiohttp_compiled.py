"""The aiohttp adapter on the compiled request (``Core.start_request``, ``finish_common``) records what Python does.

One aiohttp app, served by a real aiohttp server in the test process twice:
with an instrumentation on the Python path (``ServerRequest``) and with one
on the compiled path. The same table of requests (common answers, query,
body, HEAD, an unknown method, 404, 401, 503, an exception, streaming, work
after the response, sampled and unsampled parents) must give the same spans
and HTTP metrics, and the compiled run must really have used the compiled
request for every HTTP request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import Telemetry
from tests.support.aiohttp_server import serve_in_thread
from tests.test_accel_core import DURATION, _pair, _points, _spans

pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


async def _item(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="x" * int(request.query.get("size", "2")))


async def _raise(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def _unavailable(request: web.Request) -> web.Response:
    return web.Response(text="later", status=503)


async def _denied(request: web.Request) -> web.Response:
    raise web.HTTPUnauthorized(text="no")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for part in (b"a" * 10, b"b" * 20, b"c"):
        await response.write(part)
    await response.write_eof()
    return response


async def _after(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write_eof(b"done")
    await asyncio.sleep(0.15)  # the app's own work after its response is complete
    return response


def _app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/items/{item_id}", _item)
    for path, handler in (
        ("/raise", _raise),
        ("/unavailable", _unavailable),
        ("/denied", _denied),
        ("/stream", _stream),
        ("/after", _after),
    ):
        app.router.add_get(path, handler)
    return app


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/items/1", {}),
    ("GET", "/items/2?size=5&token=secret", {}),
    ("POST", "/items/3", {"content": b"abcd"}),
    ("HEAD", "/items/4", {}),
    ("PROPFIND", "/items/5", {}),  # known to the HTTP parser, not to the kit: _OTHER
    ("GET", "/missing", {}),
    ("GET", "/raise", {}),
    ("GET", "/unavailable", {}),
    ("GET", "/denied", {}),
    ("GET", "/stream", {}),
    ("GET", "/after", {}),
    ("GET", "/items/6", {"headers": {"traceparent": SAMPLED, "user-agent": "curl/8"}}),
    ("GET", "/items/7", {"headers": {"traceparent": UNSAMPLED}}),
]


class _Counting:
    """The compiled core, counting the requests it starts (a C type's methods cannot be patched)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.started = 0

    def start_request(self, *args: Any) -> Any:
        self.started += 1
        return self.core.start_request(*args)


def _serve(telemetry: Telemetry) -> None:
    with serve_in_thread(_app(), telemetry.instrumentation) as base_url, httpx.Client(base_url=base_url) as client:
        for method, path, options in REQUESTS:
            headers = {"user-agent": "test", **options.get("headers", {})}
            client.request(method, path, content=options.get("content"), headers=headers)
        # the background span ends after its response reached the client: wait for every span
        deadline = time.monotonic() + 5
        while len(telemetry.spans.get_finished_spans()) < len(REQUESTS) and time.monotonic() < deadline:
            time.sleep(0.01)


def _untimed(points: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The points without the duration's bucket counts: a real server on a loaded host may take a request
    past the first bucket on either path (counts, attributes and exemplars still compared)."""
    return [(p[0], p[1], p[2], *p[4:]) if p[0] == DURATION else p for p in points]


def test_both_paths_record_the_same() -> None:
    python, compiled = _pair()
    counting = _Counting(compiled.instrumentation.asgi_core)
    compiled.instrumentation.asgi_core = counting
    _serve(python)
    _serve(compiled)
    assert counting.started == len(REQUESTS)
    assert _spans(compiled) == _spans(python)
    assert _untimed(_points(compiled)) == _untimed(_points(python))
    for telemetry in (python, compiled):
        names = {s.name for s in telemetry.spans.get_finished_spans()}
        # every ending is reached: common, 5xx, 401, raised, work after the response, unmatched, propagated
        expected = {"GET /after background", "GET /raise", "GET /denied", "GET /unavailable", "GET"}
        assert expected | {"HTTP /items/{item_id}"} <= names
