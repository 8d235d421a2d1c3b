"""Stdout JSON lines and handler bookkeeping."""

from __future__ import annotations

import io
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_asgi_kit.logs import handlers
from otel_asgi_kit.logs.access import ACCESS_LOGGERS, access_fields
from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter
from otel_asgi_kit.settings import load_settings


def _record(msg: str, *args: object, exc: bool = False, name: str = "shop") -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("missing")
        except KeyError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.ERROR if exc else logging.INFO, __file__, 1, msg, args, exc_info)


def test_json_line_has_ecs_fields_and_no_trace_outside_a_span() -> None:
    """Outside a span there are no trace fields at all (never "0")."""
    doc = json.loads(EcsJsonFormatter("shop").format(_record("hello %s", "world")))
    assert doc["message"] == "hello world"
    assert doc["log.level"] == "info"
    assert doc["log.logger"] == "shop"
    assert doc["service.name"] == "shop"
    assert doc["@timestamp"].endswith("Z") and "T" in doc["@timestamp"]
    assert "trace.id" not in doc and "span.id" not in doc


def test_json_line_carries_the_current_span() -> None:
    """Inside a span, trace.id and span.id are that span's."""
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        doc = json.loads(EcsJsonFormatter("shop").format(_record("in span")))
    ctx = span.get_span_context()
    assert doc["trace.id"] == format(ctx.trace_id, "032x")
    assert doc["span.id"] == format(ctx.span_id, "016x")


def test_errors_carry_type_message_and_stack() -> None:
    """exc_info becomes error.type, error.message and error.stack_trace."""
    doc = json.loads(EcsJsonFormatter("shop").format(_record("failed", exc=True)))
    assert doc["error.type"] == "KeyError"
    assert "missing" in doc["error.message"]
    assert "Traceback" in doc["error.stack_trace"] and "raise KeyError" in doc["error.stack_trace"]


def test_user_text_cannot_forge_a_line() -> None:
    """CR/LF and ANSI escapes in a message stay inside one JSON line."""
    evil = 'x\r\n{"log.level": "critical", "message": "forged"}\x1b[2J\u2028'
    line = EcsJsonFormatter("shop").format(_record("%s", evil))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert json.loads(line)["message"] == evil


class _Opaque:
    def __str__(self) -> str:
        return "<opaque>"


def _odd_records() -> list[logging.LogRecord]:
    records = [
        _record("hello %s", "world"),
        _record("uvicorn's error line\n\n"),
        _record('grüße — 日本 \u2028 \x1b[2J "quoted" \\ back', name="ünïcode.logger"),
        _record("failed", exc=True),
        _record('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET", "/a?b=1", "1.1", 200, name="uvicorn.access"),
    ]
    extra = _record("with extras")
    extra.__dict__.update(
        {
            "event.category": "authentication",
            "http.response.status_code": 401,
            "trace.id": "user-supplied",
            "message.extra": _Opaque(),  # written with default=str
            "plain_key": "not dotted: left out",
            "error.type": "set by the caller",
        }
    )
    records.append(extra)
    stacked = _record("stack")
    stacked.stack_info = "Stack (most recent call last):\n  here"
    records.append(stacked)
    return records


def _document(formatter: EcsJsonFormatter, record: logging.LogRecord) -> dict[str, Any]:
    """The document built the plain way (the formatter's code before its fast path): the reference."""
    doc: dict[str, Any] = {
        "@timestamp": formatter._timestamp(record.created),
        "log.level": record.levelname.lower(),
        "message": record.getMessage().rstrip("\n"),
        "log.logger": record.name,
        "service.name": formatter._service_name,
    }
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        doc["trace.id"] = format(ctx.trace_id, "032x")
        doc["span.id"] = format(ctx.span_id, "016x")
    if record.name in ACCESS_LOGGERS:
        access = access_fields(record)
        if access is not None:
            doc.update(access)
    if len(record.__dict__) > len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) + 1:
        for key, value in record.__dict__.items():
            if "." in key and key not in doc:
                doc[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        exc_type, exc, tb = record.exc_info
        doc["error.type"] = exc_type.__qualname__
        doc["error.message"] = str(exc)
        doc["error.stack_trace"] = "".join(traceback.format_exception(exc_type, exc, tb))
    elif record.stack_info:
        doc["error.stack_trace"] = record.stack_info
    return doc


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "compiled"])
@pytest.mark.parametrize("in_span", [False, True])
def test_fast_line_is_the_plain_encoding_of_the_document(in_span: bool, compiled: bool) -> None:
    """``format`` writes fields directly (in C too); it must be exactly what json writes for the same document."""
    from otel_asgi_kit.sdk import accel

    assert accel.use(compiled).startswith("compiled" if compiled else "pure Python"), accel.status()
    formatter = EcsJsonFormatter('shop "svc"')
    tracer = TracerProvider().get_tracer("t")
    encode = json.JSONEncoder(default=str).encode
    for record in _odd_records():
        if in_span:
            with tracer.start_as_current_span("s"):
                fast, plain = formatter.format(record), encode(_document(formatter, record))
        else:
            fast, plain = formatter.format(record), encode(_document(formatter, record))
        assert fast == plain
    accel.use(True)


def test_access_log_fields() -> None:
    """uvicorn's access record is split into method, path and status fields."""
    record = _record('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET", "/a?b=1", "1.1", 200, name="uvicorn.access")
    doc = json.loads(EcsJsonFormatter("shop").format(record))
    assert doc["http.request.method"] == "GET"
    assert doc["url.original"] == "/a?b=1"
    assert doc["http.response.status_code"] == 200
    assert doc["client.address"] == "10.0.0.1"


def test_aiohttp_access_log_fields_and_redaction() -> None:
    """aiohttp's access record (atoms as attributes) gets method, path, status and client; the query is redacted."""
    from otel_asgi_kit.redaction import AccessLogRedaction, QueryRedactor

    record = _record('10.0.0.2 "GET /a?token=abc&b=1 HTTP/1.1" 200 12', name="aiohttp.access")
    record.__dict__.update(
        first_request_line="GET /a?token=abc&b=1 HTTP/1.1", response_status=200, remote_address="10.0.0.2"
    )
    AccessLogRedaction(QueryRedactor(["token"])).filter(record)
    doc = json.loads(EcsJsonFormatter("shop").format(record))
    assert doc["http.request.method"] == "GET"
    assert doc["url.original"] == "/a?token=REDACTED&b=1"
    assert doc["http.response.status_code"] == 200
    assert doc["client.address"] == "10.0.0.2"
    assert "abc" not in doc["message"]
    assert "first_request_line" not in doc  # undotted atoms stay out of the document


def test_route_to_root_keeps_a_logger_switched_off(clean_root: logging.Logger) -> None:
    """gunicorn.access under aiohttp's worker: routed to the kit when gunicorn writes it, left off when it does not."""
    handlers.install_log_handlers(load_settings({"OTEL_LOGS_EXPORTER": "none"}), None)
    logger = logging.getLogger("kit.test.access")
    logger.handlers, logger.propagate = [], False
    handlers.route_to_root(logger.name)
    assert (logger.handlers, logger.propagate) == ([], False)
    logger.handlers = [logging.StreamHandler(sys.stderr)]
    handlers.route_to_root(logger.name)
    assert (logger.handlers, logger.propagate) == ([], True)


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_one_handler_even_after_basicconfig_and_dictconfig(
    clean_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """basicConfig, dictConfig and a second install never add a second console handler."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    settings = load_settings({"OTEL_LOGS_EXPORTER": "none"})
    handlers.install_log_handlers(settings, None)
    handlers.install_log_handlers(settings, None)
    logging.basicConfig(level=logging.INFO)
    logging.basicConfig(force=True)
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
            "root": {"handlers": ["console"], "level": "INFO"},
        }
    )
    logging.getLogger("uvicorn.access").handlers = [logging.StreamHandler(sys.stderr)]
    logging.getLogger("uvicorn.access").propagate = False
    handlers.restore_log_handlers()
    logging.getLogger("shop").info("once")
    logging.getLogger("uvicorn.access").info("access once")
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["once", "access once"]
    assert len(clean_root.handlers) == 1
