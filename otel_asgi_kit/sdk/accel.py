"""The OTLP writers in use: the compiled ones of ``otel_asgi_kit_accel`` when installed and wanted, else Python.

The optional extension (``accel/`` in the repository, ``pip install ./accel``)
writes the common case of ``wire.encode_span`` and
``wire_logs.encode_log_fields`` in C and answers ``None`` for anything
else, which the Python writers then encode; so every span and record is
encoded exactly once and the bytes do not depend on which writer ran
(``tests/test_accel.py``). Before the compiled writers are used they must
write the Python writers' bytes for a few reference spans and records;
if they do not, or the extension cannot be imported, the Python writers
run and ``status()`` (printed by ``doctor``) says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_asgi_kit.sdk import wire, wire_logs

encode_span: Callable[[Any], bytes] = wire.encode_span
encode_log_fields: Callable[..., bytes] = wire_logs.encode_log_fields
_status = "pure Python (not switched on yet)"
_compiled = False
_compiled_span_writer: Callable[[Any], bytes | None] | None = None
_compiled_log_writer: Callable[..., bytes | None] | None = None


def status() -> str:
    """Which writers (and ASGI request path) run, for ``doctor``."""
    return _status


def compiled() -> bool:
    """Whether the compiled writers are switched on; the ASGI request path (``asgi.fast``) follows them."""
    return _compiled


def compiled_span_writer() -> Callable[[Any], bytes | None] | None:
    """The compiled span writer itself (``None`` for what it does not write), when switched on, else ``None``."""
    return _compiled_span_writer


def compiled_log_writer() -> Callable[..., bytes | None] | None:
    """The compiled ``encode_log_fields`` itself (``None`` for what it does not write), when switched on."""
    return _compiled_log_writer


def use(enabled: bool) -> str:
    """Switch to the compiled writers (if ``enabled``, installed and agreeing with Python); returns ``status()``."""
    global encode_span, encode_log_fields, _status, _compiled, _compiled_span_writer, _compiled_log_writer
    encode_span, encode_log_fields = wire.encode_span, wire_logs.encode_log_fields
    _compiled = False
    _compiled_span_writer = _compiled_log_writer = None
    if not enabled:
        _status = "pure Python (OTEL_ASGI_KIT_ACCELERATOR=false)"
        return _status
    try:
        import otel_asgi_kit_accel
        from otel_asgi_kit_accel import _wire
    except ImportError:
        _status = "pure Python (otel-asgi-kit-accel is not installed)"
        return _status
    from opentelemetry.trace import SpanContext, SpanKind, StatusCode
    from opentelemetry.trace.span import DEFAULT_TRACE_STATE

    try:
        _wire.configure(
            SpanContext,
            DEFAULT_TRACE_STATE,
            _by_value(SpanKind),
            _by_value(StatusCode),
        )
    except Exception as exc:  # an SDK whose enums are not numbered 0..n: the self test decides below
        _status = f"pure Python (the compiled encoder could not be set up: {exc})"
        return _status
    disagreement = _self_test(_wire.encode_span, _wire.encode_log_fields)
    if disagreement:
        _status = f"pure Python (the compiled encoder {otel_asgi_kit_accel.__version__} {disagreement})"
        return _status
    encode_span = _either(_wire.encode_span, wire.encode_span)
    encode_log_fields = _either(_wire.encode_log_fields, wire_logs.encode_log_fields)
    _compiled = True
    _compiled_span_writer = _wire.encode_span
    _compiled_log_writer = _wire.encode_log_fields
    try:
        from otel_asgi_kit_accel import _core
    except ImportError:
        path = "the ASGI request path in Python (this build has no compiled one)"
    else:
        path = "the ASGI request path compiled too (unless headers are captured)"
        if hasattr(_core, "LogDirect") and hasattr(_core, "EcsLine"):
            path += "; plain log records' OTLP bytes and stdout lines compiled too"
    _status = f"compiled (otel-asgi-kit-accel {otel_asgi_kit_accel.__version__}), Python for uncommon cases; {path}"
    return _status


def _by_value(enum: Any) -> tuple[Any, ...]:
    """The members when their values are 0, 1, 2, ... (the C side then compares identities), else ()."""
    members = tuple(sorted(enum, key=lambda m: m.value))
    return members if all(m.value == i for i, m in enumerate(members)) else ()


def _either(compiled: Callable[..., bytes | None], python: Callable[..., bytes]) -> Callable[..., bytes]:
    def encode(*args: Any) -> bytes:
        return compiled(*args) or python(*args)

    return encode


def _self_test(span_writer: Callable[[Any], bytes | None], log_writer: Callable[..., bytes | None]) -> str:
    """'' when the compiled writers agree with Python on the reference cases, else what went wrong."""
    try:
        for span in _reference_spans():
            compiled = span_writer(span)
            if compiled is None:
                return f"did not take the common span {span.name!r}"
            if compiled != wire.encode_span(span):
                return f"wrote other bytes than Python for span {span.name!r}"
        for fields in REFERENCE_LOG_FIELDS:
            if log_writer(*fields) != wire_logs.encode_log_fields(*fields):
                return "wrote other bytes than Python for a log record"
    except Exception as exc:  # a broken build must not stop the app
        return f"failed its check: {type(exc).__name__}: {exc}"
    return ""


REFERENCE_ATTRIBUTES: dict[str, Any] = {
    "http.request.method": "GET",
    "url.path": "/items/ü/" + "x" * 200,
    "http.response.status_code": 200,
    "negative": -42,
    "int64.max": (1 << 63) - 1,
    "flag": True,
    "off": False,
    "ratio": 0.25,
}
REFERENCE_LOG_FIELDS: list[tuple[Any, ...]] = [
    (
        1_700_000_000_123_456_789,
        9,
        "INFO",
        "hello ü",
        {**REFERENCE_ATTRIBUTES, "": "empty key"},
        0,
        1,
        1 << 127,
        1,
        5,
        None,
    ),
    (None, None, None, "", None, 0, 0, 0, 0, None, "kit.event"),
]


def _reference_spans() -> list[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        set_span_in_context,
    )

    tracer = TracerProvider().get_tracer("otel_asgi_kit.accel.check")
    remote = set_span_in_context(NonRecordingSpan(SpanContext(1 << 100, 7, True, TraceFlags(1))))
    spans = []
    server = tracer.start_span("GET /items/{id}", context=remote, kind=SpanKind.SERVER, attributes=REFERENCE_ATTRIBUTES)
    server.set_status(Status(StatusCode.ERROR, "ValueError: boom"))
    spans.append(server)
    plain = tracer.start_span("internal", context=set_span_in_context(server))
    plain.set_status(Status(StatusCode.OK))
    spans.append(plain)
    spans.append(tracer.start_span("", kind=SpanKind.CLIENT))
    for span in spans:
        span.end()
    return spans
