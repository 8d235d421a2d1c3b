"""One ECS-style JSON object per log record, with the current trace context.

Hand-written: ``ecs-logging``'s ``StdlibFormatter`` cost 3.4x as much per
record in ``benchmarks/log_formatter.py`` (24 µs against 7 µs), a large share
of the per-request budget once the access log is on; python-json-logger costs
the same as this one but would still need the trace fields and the access-log
fields added by hand, so it would buy nothing but a dependency. The field names
follow ECS; ``ensure_ascii`` escapes every control and non-ASCII character,
so no user-supplied text can start a new line or inject a terminal escape.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from typing import Any

from opentelemetry import trace

from otel_asgi_kit.logs.access import ACCESS_LOGGERS, access_fields

# A plain LogRecord has about 22 attributes; more means ``extra=`` fields to copy.
_PLAIN_RECORD_SIZE = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) + 1
_encode = json.JSONEncoder(default=str).encode  # one encoder, not one per record


class EcsJsonFormatter(logging.Formatter):
    def __init__(self, service_name: str) -> None:
        super().__init__()
        self._service_name = service_name
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": self._timestamp(record.created),
            "log.level": record.levelname.lower(),
            "message": record.getMessage().rstrip("\n"),  # uvicorn ends its error message in a newline
            "log.logger": record.name,
            "service.name": self._service_name,
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            doc["trace.id"] = format(ctx.trace_id, "032x")
            doc["span.id"] = format(ctx.span_id, "016x")
        if record.name in ACCESS_LOGGERS:
            access = access_fields(record)
            if access is not None:
                doc.update(access)
        if len(record.__dict__) > _PLAIN_RECORD_SIZE:
            # ECS-style ``extra={"event.category": ...}`` fields: dotted names only, so
            # the record's own attributes and helpers' private ones stay out.
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
        return _encode(doc)


class TextFormatter(logging.Formatter):
    """Plain lines for humans, trace ids appended when a span is current."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            line += f" trace.id={ctx.trace_id:032x} span.id={ctx.span_id:016x}"
        # One record, one line: newlines in user text are escaped.
        return line.replace("\r", "\\r").replace("\n", "\\n").replace("\x1b", "\\x1b")
