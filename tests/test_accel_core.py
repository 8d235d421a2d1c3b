"""The compiled ASGI request path (``otel_asgi_kit_accel._core`` via ``asgi.fast``) records what Python records.

Every request here goes through two instrumentations built alike, one on the
Python path and one on the compiled path, and the exported spans (without
ids and times), the response messages (without the trace id) and the HTTP
metrics must be equal: for a table of common and uncommon requests through a
Starlette app, and for arbitrary scopes from hypothesis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from otel_asgi_kit import failsafe
from otel_asgi_kit.asgi import fast
from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.core import active
from otel_asgi_kit.sdk import accel
from tests.conftest import Telemetry, make_telemetry

_core = pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")

DURATION = "http.server.request.duration"


def _pair(env: dict[str, str] | None = None) -> tuple[Telemetry, Telemetry]:
    python, compiled = make_telemetry(env), make_telemetry(env, compiled=True)
    python.instrumentation.asgi_core = None
    assert isinstance(compiled.instrumentation.asgi_core, _core.Core)
    return python, compiled


async def _item(request: Request) -> Response:
    return PlainTextResponse("x" * int(request.query_params.get("size", "2")))


async def _raise(request: Request) -> Response:
    raise RuntimeError("boom")


async def _unavailable(request: Request) -> Response:
    return PlainTextResponse("later", status_code=503)


async def _denied(request: Request) -> Response:
    return PlainTextResponse("no", status_code=401)


async def _stream(request: Request) -> Response:
    async def chunks() -> Any:
        for part in (b"a" * 10, b"b" * 20, b"c"):
            yield part

    return StreamingResponse(chunks())


async def _later() -> None:
    await asyncio.sleep(0.08)


async def _background(request: Request) -> Response:
    return PlainTextResponse("done", background=BackgroundTask(_later))


def _app() -> Starlette:
    install_framework_hooks()
    return Starlette(
        routes=[
            Route("/items/{item_id}", _item, methods=["GET", "POST", "HEAD", "FOO"]),
            Route("/raise", _raise),
            Route("/unavailable", _unavailable),
            Route("/denied", _denied),
            Route("/stream", _stream),
            Route("/background", _background),
        ]
    )


REQUESTS: list[dict[str, Any]] = [
    {"path": "/items/1"},
    {"path": "/items/2", "query_string": b"size=5&token=secret"},
    {"path": "/items/3", "method": "POST", "headers": [(b"content-length", b"4")], "body": b"abcd"},
    {"path": "/items/4", "method": "HEAD"},
    {"path": "/items/5", "method": "FOO"},
    {"path": "/missing"},
    {"path": "/raise"},
    {"path": "/unavailable"},
    {"path": "/denied"},
    {"path": "/stream"},
    {"path": "/background"},
    {
        "path": "/items/6",
        "headers": [
            (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            (b"user-agent", b"curl/8"),
        ],
    },
    {"path": "/items/7", "headers": [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")]},
    {"path": "/items/8", "http_version": "2", "client": None},
]


def _scope(spec: dict[str, Any]) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": spec.get("http_version", "1.1"),
        "method": spec.get("method", "GET"),
        "scheme": "http",
        "path": spec["path"],
        "raw_path": spec["path"].encode(),
        "query_string": spec.get("query_string", b""),
        "root_path": "",
        "headers": [(b"host", b"testserver"), *spec.get("headers", [])],
        "client": spec.get("client", ("10.0.0.7", 4000)),
        "server": ("testserver", 80),
    }
    return scope


async def _serve(
    app: Any, scope: dict[str, Any], body: bytes = b"", inst: Any = None
) -> tuple[list[dict[str, Any]], Any]:
    sent: list[dict[str, Any]] = []
    send_types: list[str] = []
    answered = asyncio.Event()
    asked: list[bool] = []

    async def receive() -> dict[str, Any]:
        if not asked:
            asked.append(True)
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()  # as a server: the client is gone once the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        send_types.append(type(send).__name__)
        await app(scope, receive, send)

    wrapped = KitMiddleware(spy, instrumentation=inst)
    try:
        await wrapped(scope, receive, send)
    except RuntimeError:
        pass  # /raise: the exception leaves the app after the kit's 500
    return sent, send_types[0] if send_types else None


def _without_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        message = dict(message)
        if "headers" in message:
            message["headers"] = [
                (k, v[:3] + v[-3:]) if k == b"traceresponse" else (k, v) for k, v in message["headers"]
            ]
        out.append(message)
    return out


def _spans(telemetry: Telemetry) -> list[tuple[Any, ...]]:
    found = []
    for span in telemetry.spans.get_finished_spans():
        if span.name.endswith(" background") and not span.name.startswith("GET /background"):
            continue  # a host stall of 50 ms after a response (a loaded CI machine) makes one on either path
        events = [(e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"}) for e in span.events]
        found.append(
            (
                span.name,
                span.kind,
                dict(span.attributes),
                span.status.status_code,
                span.status.description,
                events,
                (span.parent.trace_id if span.parent.is_remote else "local") if span.parent else None,
                span.context.trace_flags,
                span.end_time >= span.start_time,
            )
        )
    return sorted(found, key=repr)


def _points(telemetry: Telemetry) -> list[tuple[Any, ...]]:
    out = []
    for name in (
        DURATION,
        "http.server.active_requests",
        "http.server.response.body.size",
        "http.server.request.body.size",
    ):
        for point in telemetry.points(name):
            if name == "http.server.active_requests":
                out.append((name, dict(point.attributes), point.value))
            else:
                values = (point.count, list(point.bucket_counts), point.min, point.max)
                # Durations differ per run, and with them the buckets hit; the reservoir keeps one exemplar per
                # bucket hit, so only whether there are exemplars is the same on both paths (seen: 2 against 1).
                exact = (point.sum,) if name != DURATION else (bool(point.exemplars),)
                out.append(
                    (name, dict(point.attributes), *values[:2], *exact, *(values[2:] if name != DURATION else ()))
                )
    return sorted(out, key=repr)


def _run_both(python: Telemetry, compiled: Telemetry, specs: list[dict[str, Any]]) -> None:
    app = _app()
    for telemetry, expected_send in ((python, "_Responder"), (compiled, "FastRequest")):
        for spec in specs:
            sent, send_type = asyncio.run(_serve(app, _scope(spec), spec.get("body", b""), telemetry.instrumentation))
            assert send_type == expected_send, spec
            spec.setdefault("sent", {})[expected_send] = _without_ids(sent)
    for spec in specs:
        assert spec["sent"]["_Responder"] == spec["sent"]["FastRequest"], spec["path"]
    assert _spans(compiled) == _spans(python)
    assert _points(compiled) == _points(python)


def test_both_paths_record_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    python, compiled = _pair()
    _run_both(python, compiled, [dict(spec) for spec in REQUESTS])
    names = [s[0] for s in _spans(compiled)]
    # the table reaches every ending: common, 5xx, 401, raised, background, unmatched, propagated
    assert "GET /background background" in names and "GET /raise" in names and "GET" in names
    # one background span more, one request less: /items/7's parent was not sampled, so it is not exported
    assert len(_spans(python)) == len(REQUESTS)


def test_the_query_is_redacted_on_both_paths() -> None:
    python, compiled = _pair({"OTEL_ASGI_KIT_REDACT_QUERY_PARAMS": "token"})
    _run_both(python, compiled, [{"path": "/items/1", "query_string": b"size=3&token=abc"}])
    (span,) = compiled.spans.get_finished_spans()
    assert "abc" not in span.attributes["url.query"]


@pytest.mark.parametrize("trusted", ["10.0.0.0/8", ""], ids=["trusted-proxy", "no-proxy"])
def test_the_client_address_on_both_paths(trusted: str) -> None:
    """A common request's ``client.address``: the forwarded client behind a trusted proxy, else the peer."""
    python, compiled = _pair({"OTEL_ASGI_KIT_TRUSTED_PROXIES": trusted})
    forwarded = {"path": "/items/1", "headers": [(b"x-forwarded-for", b"198.51.100.7")]}
    _run_both(python, compiled, [forwarded, {"path": "/items/2", "client": None}])
    addresses = [s.attributes.get("client.address") for s in compiled.spans.get_finished_spans()]
    assert addresses == ["198.51.100.7" if trusted else "10.0.0.7", None]


methods = st.one_of(st.sampled_from(["GET", "POST", "HEAD", "FOO", "get", ""]), st.text(max_size=40))
header_names = st.one_of(
    st.sampled_from([b"traceparent", b"tracestate", b"baggage", b"content-length", b"user-agent", b"host"]),
    st.binary(max_size=20),
)


async def _plain(scope: Any, receive: Any, send: Any) -> None:
    status = 200 if scope["path"] != "/e" else 500
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    method=methods,
    path=st.one_of(st.sampled_from(["/", "/e", "/items/1"]), st.text(max_size=60)),
    query=st.binary(max_size=60),
    headers=st.lists(st.tuples(header_names, st.binary(max_size=80)), max_size=6),
    version=st.sampled_from(["1.1", "2", ""]),
    client=st.sampled_from([("127.0.0.1", 1), None, ("::1", 2)]),
)
def test_arbitrary_scopes_give_the_same_span_and_answer(
    method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], version: str, client: Any
) -> None:
    python, compiled = _pair()
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers,
        "scheme": "https",
        "http_version": version,
        "client": client,
    }
    answers = []
    for telemetry in (python, compiled):
        sent, _ = asyncio.run(_serve(_plain, dict(scope), b"", telemetry.instrumentation))
        answers.append(_without_ids(sent))
    assert answers[0] == answers[1]
    assert answers[1][0]["status"] in (200, 500)
    assert _spans(compiled) == _spans(python)
    assert _points(compiled) == _points(python)


def test_a_failing_piece_leaves_no_context_and_the_app_answers(capsys: pytest.CaptureFixture[str]) -> None:
    """A piece that raises after the span's context was attached: the app still answers, uninstrumented,
    and no context of ours stays attached."""
    _, compiled = _pair()
    inst = compiled.instrumentation
    failsafe._seen.clear()

    def broken_task() -> Any:
        raise ValueError("current_task broke")

    broken = fast.core_for(inst, switched_on=True, current_task=broken_task)
    assert broken is not None

    async def one() -> tuple[Any, list[dict[str, Any]]]:
        sent, _ = await _serve(_plain, _scope({"path": "/items/1"}), b"", inst)
        return trace.get_current_span(), sent

    current_span, sent = asyncio.run(one())
    assert sent[0]["status"] == 200 and not any(k == b"traceresponse" for k, _ in sent[0]["headers"])
    assert not current_span.get_span_context().is_valid
    assert inst.asgi_core is broken and not active._spans
    assert "current_task broke" in capsys.readouterr().err


def test_the_switch_and_doctor_say_which_path_runs() -> None:
    saved = accel.status(), accel.compiled()
    try:
        assert "request path compiled" in accel.use(True)
        inst = make_telemetry().instrumentation
        assert isinstance(fast.core_for(inst), _core.Core)
        accel.use(False)
        inst = make_telemetry().instrumentation
        assert fast.core_for(inst) is None
        inst = make_telemetry({"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-a"}).instrumentation
        assert fast.core_for(inst, switched_on=True) is None  # captured headers: the Python path
    finally:
        accel.use(saved[1])


def test_the_send_returns_the_servers_awaitable() -> None:
    """Non-final messages are the server's own awaitables (no coroutine of ours in between)."""
    _, compiled = _pair()
    marker = object()
    seen: list[Any] = []

    class Send:
        def __call__(self, message: dict[str, Any]) -> Any:
            seen.append(message["type"])
            return self._done()

        async def _done(self) -> Any:
            return marker

    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = send({"type": "http.response.start", "status": 200, "headers": []})
        assert start.cr_code is Send._done.__code__  # the server's coroutine itself
        await start
        part = send({"type": "http.response.body", "body": b"a", "more_body": True})
        assert part.cr_code is Send._done.__code__
        await part
        await send({"type": "http.response.body", "body": b"b"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    wrapped = KitMiddleware(app, instrumentation=compiled.instrumentation)
    asyncio.run(wrapped(_scope({"path": "/x"}), receive, Send()))
    assert seen == ["http.response.start", "http.response.body", "http.response.body"]
    (span,) = compiled.spans.get_finished_spans()
    assert span.attributes["http.response.status_code"] == 200


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
            st.integers(min_value=0, max_value=10**9),
            st.sampled_from([0, 0.005, 0.01, 100, 1000, 10**8]),  # on the bounds: that bound's bucket
        ),
        max_size=40,
    ),
    sampled=st.lists(st.booleans(), max_size=40),
)
def test_the_compiled_histogram_counts_as_the_python_one(values: list[float], sampled: list[bool]) -> None:
    from opentelemetry.trace import SpanContext

    from otel_asgi_kit.metrics.http_aggregator import CompiledHistogram, Histogram
    from otel_asgi_kit.metrics.instruments import BYTE_BUCKETS

    for bounds in ((0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), BYTE_BUCKETS, ()):
        python, compiled = Histogram(bounds), CompiledHistogram(bounds)
        for i, value in enumerate(values):
            if i < len(sampled) and sampled[i]:
                ctx = SpanContext(i + 1, i + 2, False)
                python.record_sampled(value, ctx, 1000 + i)
                compiled.record_sampled(value, ctx, 1000 + i)
            else:
                python.record(value)
                compiled.record(value)
        a, b = python.point({"k": "v"}, 1, 2), compiled.point({"k": "v"}, 1, 2)
        assert (b.count, list(b.bucket_counts), b.explicit_bounds) == (
            a.count,
            list(a.bucket_counts),
            a.explicit_bounds,
        )
        assert (b.sum, b.min, b.max) == (a.sum, a.min, a.max)
        assert [(e.value, e.trace_id, e.span_id, e.time_unix_nano) for e in b.exemplars] == [
            (e.value, e.trace_id, e.span_id, e.time_unix_nano) for e in a.exemplars
        ]


def test_compiled_metrics_use_the_compiled_histogram() -> None:
    from otel_asgi_kit.metrics.http_aggregator import CompiledHistogram, Histogram, HttpServerMetrics

    _, compiled = _pair()
    assert compiled.instrumentation.http is not None
    assert compiled.instrumentation.http._histogram is CompiledHistogram
    assert HttpServerMetrics((1.0,), compiled=False)._histogram is Histogram


def test_a_scope_that_is_not_a_dict_takes_the_python_path() -> None:
    """ASGI scopes are dicts; the compiled path reads only those, any other mapping is served in Python."""
    from collections.abc import MutableMapping

    class Scope(MutableMapping[str, Any]):
        def __init__(self, data: dict[str, Any]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> Any:
            return self._data[key]

        def __iter__(self) -> Any:
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

        def __setitem__(self, key: str, value: Any) -> None:
            self._data[key] = value

        def __delitem__(self, key: str) -> None:
            del self._data[key]

    _, compiled = _pair()
    assert compiled.instrumentation.asgi_core.start(Scope(_scope({"path": "/x"})), None) is None
    sent, send_type = asyncio.run(_serve(_plain, Scope(_scope({"path": "/x"})), b"", compiled.instrumentation))  # type: ignore[arg-type]
    assert send_type == "_Responder" and sent[0]["status"] == 200
    (span,) = compiled.spans.get_finished_spans()
    assert span.attributes["url.path"] == "/x"


def test_the_compiled_trace_header_is_pythons() -> None:
    """``traceresponse`` written in C (the ASGI send, aiohttp's ``FastRequest.trace_header``) equals Python's."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from otel_asgi_kit.core.propagation import trace_header_value

    ids = [(1, 1), ((1 << 128) - 1, (1 << 64) - 1), (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)]
    for trace_id, span_id in ids:
        for flags in (0, 1):
            span = NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(flags)))
            assert _core.trace_header_value(span) == trace_header_value(span)


def test_the_span_context_is_read_from_its_field_only_for_the_type_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fast_span_context(ServerSpan)`` (set up by ``fast.core_for``) reads that type's ``_context`` field instead
    of calling ``get_span_context()``, as the starter checked it returns; a subclass, or a patched method the
    starter saw, is asked."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanContext, TraceFlags

    from otel_asgi_kit.core.propagation import trace_header_value
    from otel_asgi_kit.sdk.server_span import ServerSpan, ServerSpanStarter

    assert hasattr(_core, "fast_span_context"), "an otel-asgi-kit-accel build older than accel/ (0.6)"
    starter = ServerSpanStarter(TracerProvider().get_tracer("t"))
    assert starter.context_is_field
    span = starter.start("GET", None, {})
    expected = trace_header_value(span)
    other = SpanContext(5, 6, False, TraceFlags(1))

    class Elsewhere(ServerSpan):
        def get_span_context(self) -> SpanContext:
            return other

    try:
        _core.fast_span_context(ServerSpan)
        with monkeypatch.context() as patched:  # the field, not the method
            patched.setattr(ServerSpan, "get_span_context", lambda self: 1 / 0)
            assert _core.trace_header_value(span) == expected
            _core.fast_span_context(None)
            with pytest.raises(ZeroDivisionError):
                _core.trace_header_value(span)
        _core.fast_span_context(ServerSpan)
        span.__class__ = Elsewhere  # another type: its own method
        elsewhere = b"00-" + b"0" * 31 + b"5-0000000000000006-01"
        assert _core.trace_header_value(span) == trace_header_value(span) == elsewhere
    finally:
        _core.fast_span_context(ServerSpan)
    monkeypatch.setattr(ServerSpan, "get_span_context", lambda self: other)
    assert not ServerSpanStarter(TracerProvider().get_tracer("t")).context_is_field


def test_the_kit_attributes_are_set_in_c_only_while_the_method_is_the_registered_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``fast_kit_attributes(ServerSpan.set_kit_attributes)`` (set up by ``fast.core_for``): a common request's
    route, status and client go onto the span's fields in C; with the method replaced, the new one is called."""
    from otel_asgi_kit.sdk.server_span import ServerSpan

    python, compiled = _pair()
    _run_both(python, compiled, [{"path": "/items/1"}])
    (span,) = compiled.spans.get_finished_spans()
    assert (span.name, span.attributes["http.route"], span.attributes["http.response.status_code"]) == (
        "GET /items/{item_id}",
        "/items/{item_id}",
        200,
    )
    calls: list[str] = []
    original = ServerSpan.set_kit_attributes

    def watched(self: Any, attributes: dict[str, Any], name: str | None = None) -> None:
        calls.append(str(name))
        original(self, attributes, name)

    monkeypatch.setattr(ServerSpan, "set_kit_attributes", watched)
    _run_both(python, compiled, [{"path": "/items/2"}])
    assert calls == ["GET /items/{item_id}", "GET /items/{item_id}"]  # the Python path's, then the compiled one's


@pytest.mark.parametrize("in_c", [True, False], ids=["attached-in-c", "attached-in-python"])
def test_a_requests_context_is_the_same_attached_in_c_or_in_python(in_c: bool) -> None:
    """``fast_context`` (set up by ``fast.core_for``): the app sees its span and the caller's baggage, and the
    context is as before once the request ended, whether the compiled request attaches it itself or calls
    ``sdk.current``'s functions."""
    from opentelemetry import baggage

    from otel_asgi_kit.sdk import current

    parts = current.compiled_parts()
    assert parts is not None
    _, compiled = _pair()
    seen: list[tuple[int, object, bool]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        span = trace.get_current_span()
        seen.append((span.get_span_context().trace_id, baggage.get_baggage("k"), span.is_recording()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def one() -> None:
        before = trace.get_current_span()
        headers = [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), (b"baggage", b"k=v")]
        await _serve(app, _scope({"path": "/x", "headers": headers}), b"", compiled.instrumentation)
        await _serve(app, _scope({"path": "/y"}), b"", compiled.instrumentation)
        assert trace.get_current_span() is before

    if not in_c:
        _core.fast_context(None, None, None, None, None)
    try:
        asyncio.run(one())
    finally:
        _core.fast_context(*parts)
    assert seen[0] == (0x0AF7651916CD43DD8448EB211C80319C, "v", True)
    assert seen[1][1:] == (None, True) and seen[1][0] not in (0, seen[0][0])
    assert len(compiled.spans.get_finished_spans()) == 2


@pytest.mark.parametrize("name", ["RootMaker", "Ender", "LogDirect", "EcsLine"])
def test_an_object_never_initialised_refuses_calls(name: str) -> None:
    """``__new__`` without ``__init__`` (fields empty): a call raises instead of reading NULL fields."""
    kind = getattr(_core, name)
    blank = kind.__new__(kind)
    with pytest.raises(RuntimeError, match="was not initialised"):
        blank(None)
    with pytest.raises(RuntimeError, match="was not initialised"):
        blank(None, None)
