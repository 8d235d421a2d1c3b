"""The log paths in C (``_core.LogDirect``, ``_core.EcsLine``) against their Python code.

The same ``LogRecord`` objects are handed to a handler with the compiled writers on and to one with
them off; what each queues is decoded and compared (only the observed time differs: it is the clock
at emission). Records the C path must leave to Python are checked to reach Python.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter
from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
from otel_asgi_kit.resource import StableResource
from otel_asgi_kit.sdk import accel, encoded, otlp_http
from tests.test_encoded import _Keep

pytest.importorskip("otel_asgi_kit_accel._core", reason="the compiled request path is not built: make")

SPAN = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1)))
QUIET = ("opentelemetry", "urllib3")


@pytest.fixture(autouse=True)
def compiled_after() -> Iterator[None]:
    yield
    accel.use(True)


def _handler(compiled: bool) -> tuple[OtlpLogHandler, encoded.EncodingLogRecordProcessor, _Keep]:
    status = accel.use(compiled)
    assert status.startswith("compiled") if compiled else status.startswith("pure Python"), status
    keep = _Keep()
    provider = LoggerProvider(resource=StableResource({"service.name": "logs"}))
    processor = encoded.EncodingLogRecordProcessor(keep, schedule_delay_millis=60_000)
    provider.add_log_record_processor(processor)
    handler = OtlpLogHandler(provider, quiet=QUIET)
    assert (handler._direct_state[2] is not None) is compiled
    return handler, processor, keep


def _record(name: str, level: int, msg: Any, *args: Any, **fields: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, args or None, None)
    record.__dict__.update(fields)
    return record


def _queued(processor: encoded.EncodingLogRecordProcessor, keep: _Keep) -> list[Any]:
    processor.force_flush()
    items = [item for batch in keep.batches for item in batch]
    assert all(type(item) is bytes for item in items)
    request = ExportLogsServiceRequest.FromString(otlp_http.encode_logs_request(items))
    out = []
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for r in sl.log_records:
                assert r.observed_time_unix_nano > 0
                r.observed_time_unix_nano = 0
                out.append((rl.resource, sl.scope.name, r))
    return out


class _Counting:
    """Counts the records the Python direct path took."""

    def __init__(self, handler: OtlpLogHandler) -> None:
        self.calls = 0
        original = handler._emit_direct

        def counted(*args: Any) -> bool:
            self.calls += 1
            return original(*args)

        handler._emit_direct = counted  # type: ignore[method-assign]


def _plain_records() -> list[logging.LogRecord]:
    logging.addLevelName(25, "NOTICE")
    return [
        _record("app", logging.INFO, "looking up item %s", "1"),
        _record("app", logging.WARNING, "grüße\nnew line \x1b[31m"),
        _record("app.db", logging.ERROR, "%d rows", 3),
        _record("app", logging.CRITICAL, "fatal"),
        _record("app", logging.DEBUG, {"structured": "body"}),
        _record("app", 25, "a named level"),
        _record("app", 5, "an unnamed level"),
        _record("", logging.INFO, "the empty logger name"),
    ]


def _handle_all(handler: OtlpLogHandler, records: list[logging.LogRecord]) -> list[Any]:
    results = []
    for record in records[:4]:
        results.append(handler.handle(record))
    with trace.use_span(SPAN):
        for record in records[4:]:
            results.append(handler.handle(record))
    return results


def test_plain_records_make_the_same_bytes_and_skip_python() -> None:
    records = _plain_records()
    python, python_processor, python_keep = _handler(False)
    _handle_all(python, records)
    _handle_all(python, records)
    compiled, processor, keep = _handler(True)
    _handle_all(compiled, records)  # the first record of a name or level is learnt by the Python path
    counting = _Counting(compiled)
    assert _handle_all(compiled, records) == [True] * len(records)
    assert counting.calls == 0
    got, expected = _queued(processor, keep), _queued(python_processor, python_keep)
    assert len(got) == 2 * len(records)
    assert got == expected
    bodies = {r.body.string_value for _, _, r in got}
    assert {"looking up item 1", "{'structured': 'body'}", "grüße\nnew line \x1b[31m"} <= bodies
    traced = [r for _, _, r in got if r.trace_id]
    assert len(traced) == 8 and {r.trace_id.hex() for r in traced} == {"0af7651916cd43dd8448eb211c80319c"}
    assert {r.severity_text for _, _, r in got} == {"INFO", "WARN", "ERROR", "FATAL", "DEBUG", "NOTICE", "Level 5"}


class _Other(logging.LogRecord):
    pass


def _uncommon() -> list[logging.LogRecord]:
    try:
        raise KeyError("k")
    except KeyError:
        failed = _record("app", logging.ERROR, "failed", exc_info=sys.exc_info())
    other = _Other("app", logging.INFO, __file__, 1, "a record subclass", None, None)
    return [
        _record("app", logging.INFO, "extra fields", **{"http.route": "/x", "n": 3}),
        failed,
        _record("uvicorn.access", logging.INFO, '%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/", "1.1", 200),
        other,
    ]


def test_uncommon_records_go_to_python_with_the_same_result() -> None:
    records = _uncommon()
    python, python_processor, python_keep = _handler(False)
    _handle_all(python, records)
    compiled, processor, keep = _handler(True)
    counting = _Counting(compiled)
    _handle_all(compiled, records)
    assert counting.calls == len(records)
    got, expected = _queued(processor, keep), _queued(python_processor, python_keep)
    assert len(got) == len(records)
    assert got == expected


def test_a_formatter_or_a_filter_on_the_handler_sends_records_to_python() -> None:
    compiled, processor, keep = _handler(True)
    records = _plain_records()[:1]
    _handle_all(compiled, records)
    counting = _Counting(compiled)
    compiled.setFormatter(logging.Formatter("formatted: %(message)s"))
    _handle_all(compiled, records)
    compiled.setFormatter(None)  # type: ignore[arg-type]
    compiled.addFilter(lambda record: True)
    _handle_all(compiled, records)
    assert counting.calls == 2
    bodies = [r.body.string_value for _, _, r in _queued(processor, keep)]
    assert bodies == ["looking up item 1", "formatted: looking up item 1", "looking up item 1"]


def test_the_exporters_own_loggers_are_skipped() -> None:
    for compiled in (True, False):
        handler, processor, keep = _handler(compiled)
        assert handler.handle(_record("opentelemetry.exporter.otlp", logging.WARNING, "export failed")) is False
        assert handler.handle(_record("urllib3.connectionpool", logging.WARNING, "retrying")) is False
        assert _queued(processor, keep) == []


def test_a_record_logged_while_one_is_emitted_is_dropped_not_recursed() -> None:
    compiled, processor, keep = _handler(True)
    _handle_all(compiled, _plain_records()[:1])

    class Logs:
        def __str__(self) -> str:
            assert compiled.handle(_record("app", logging.INFO, "inner")) is True
            return "outer"

    counting = _Counting(compiled)
    assert compiled.handle(_record("app", logging.INFO, Logs())) is True
    assert counting.calls == 0
    assert [r.body.string_value for _, _, r in _queued(processor, keep)] == ["looking up item 1", "outer"]


def test_a_failing_message_is_reported_and_never_raised(capsys: pytest.CaptureFixture[str]) -> None:
    compiled, processor, keep = _handler(True)
    _handle_all(compiled, _plain_records()[:1])

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert compiled.handle(_record("app", logging.INFO, Broken())) is True
    assert compiled.handle(_record("app", logging.INFO, "after it")) is True
    assert [r.body.string_value for _, _, r in _queued(processor, keep)] == ["looking up item 1", "after it"]
    assert "no text" in capsys.readouterr().err


def test_a_processor_added_later_gets_every_later_record() -> None:
    compiled, processor, keep = _handler(True)
    records = _plain_records()
    _handle_all(compiled, records)
    seen: list[Any] = []

    class Collect(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            seen.append(log_record.log_record.body)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    compiled._provider.add_log_record_processor(Collect())
    _handle_all(compiled, records)
    assert len(seen) == len(records) and seen[0] == "looking up item 1"
    assert compiled._direct_state[2] is None  # no direct path with two processors
    assert len(_queued(processor, keep)) == 2 * len(records)


def _formatted(compiled: bool, records: list[logging.LogRecord]) -> tuple[list[str], int]:
    """Each record's stdout line (twice: the first of a logger and level is learnt in Python), and how many
    lines the C writer wrote."""
    accel.use(compiled)
    formatter = EcsJsonFormatter("svc ü")
    lines = []
    for record in records:
        formatter.format(record)
    written = 0
    writer = formatter._compiled
    assert (writer is not None) is compiled
    for record in records:
        if writer is not None and writer(record) is not None:
            written += 1
        lines.append(formatter.format(record))
    return lines, written


def _stamped(seconds: float, record: logging.LogRecord) -> logging.LogRecord:
    record.created = seconds
    return record


def _formatter_records() -> list[logging.LogRecord]:
    plain = [
        _stamped(1_700_000_000.0, _record("app", logging.INFO, "on the second")),
        _stamped(1_700_000_000.9999, _record("app", logging.INFO, "just before the next")),
        _stamped(1_700_000_001.0005, _record("app", logging.WARNING, "grüße \x1b[31m\n")),
        _stamped(1_700_000_061.25, _record("app.db", logging.ERROR, 'quote " and \\ and \t')),
        _stamped(951_782_400.5, _record("app", 25, "leap day 2000")),
        _stamped(0.001, _record("", 5, "the epoch")),
        _record("app", logging.INFO, {"structured": "body"}),
        _record("app", logging.INFO, "trailing newlines\n\n"),
    ]
    stack = _record("app", logging.INFO, "with a stack", stack_info="Stack (most recent call last):\n  here")
    return [*plain, *_uncommon(), stack]


def test_the_stdout_line_is_the_same_from_c_and_python() -> None:
    records = _formatter_records()
    with trace.use_span(SPAN):
        traced_c, written = _formatted(True, records)
        traced_python, _ = _formatted(False, records)
    untraced_c, _ = _formatted(True, records)
    untraced_python, _ = _formatted(False, records)
    assert written == 8  # the plain ones; extra fields, exceptions, access logs, subclasses and stacks: Python
    assert traced_c == traced_python and untraced_c == untraced_python
    first = json.loads(traced_c[0])
    assert first["@timestamp"] == "2023-11-14T22:13:20.000Z" and first["trace.id"] == "0af7651916cd43dd8448eb211c80319c"
    assert json.loads(traced_c[1])["@timestamp"] == "2023-11-14T22:13:20.999Z"
    assert json.loads(untraced_c[2])["message"] == "grüße \x1b[31m" and "trace.id" not in json.loads(untraced_c[2])
    assert all("\n" not in line and line.isascii() for line in traced_c + untraced_c)
