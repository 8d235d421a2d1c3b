"""One ECS-style JSON object per log record, with the current trace context.

Hand-written: ``ecs-logging``'s ``StdlibFormatter`` cost 3.4x as much per
record in ``benchmarks/log_formatter.py`` (24 µs against 7 µs), a large share
of the per-request budget once the access log is on; python-json-logger costs
the same as this one but would still need the trace fields and the access-log
fields added by hand, so it would buy nothing but a dependency. The field names
follow ECS; ``ensure_ascii`` escapes every control and non-ASCII character,
so no user-supplied text can start a new line or inject a terminal escape.

With the compiled writers on (``sdk.accel``), the line of a plain record (no
``extra=`` fields, no exception or stack, not an access log) is written in C
(``otel_asgi_kit_accel._core.EcsLine``) from the same pieces: this
formatter's head strings, json's escaping and the current span's ids.
``tests/test_log_direct.py`` compares both writers' lines.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from typing import Any

from otel_asgi_kit.logs.access import ACCESS_LOGGERS, access_fields
from otel_asgi_kit.sdk import accel
from otel_asgi_kit.sdk.current import span_context

try:
    from otel_asgi_kit_accel import _core
except ImportError:  # not installed
    _core = None  # type: ignore[assignment]

# A plain LogRecord has about 22 attributes; more means ``extra=`` fields to copy.
_PLAIN_RECORD_SIZE = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) + 1
_encode = json.JSONEncoder(default=str).encode  # one encoder, not one per record
# What that encoder does to a str (ensure_ascii): the C function, called directly for the fixed fields.
_string = getattr(json.encoder, "c_encode_basestring_ascii", None) or json.encoder.encode_basestring_ascii
_MAX_NAMES = 1024
_FIXED = frozenset({"@timestamp", "log.level", "message", "log.logger", "service.name"})
_FIXED_TRACED = _FIXED | {"trace.id", "span.id"}


class EcsJsonFormatter(logging.Formatter):
    def __init__(self, service_name: str) -> None:
        super().__init__()
        self._service_name = service_name
        self._second = -1
        self._second_text = ""
        self._heads: dict[tuple[str, str], tuple[str, str]] = {}
        # The C line writer when the compiled writers are on as the formatter is made (the kit makes its
        # formatters after ``sdk.accel.use``), else None.
        self._compiled: Any = self._line_writer()

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """The JSON object ``_encode`` would write for the record's document, built faster.

        The five fixed fields and the trace ids are written into the line
        directly (their values escaped by the encoder's own string function);
        only the rest (access-log fields, ``extra=`` fields, errors) goes
        through the encoder. ``tests/test_logs.py`` checks both give the
        same line.
        """
        if self._compiled is not None:
            line = self._compiled(record)
            if line is not None:
                return line  # type: ignore[no-any-return]
        message = record.getMessage()
        if message.endswith("\n"):
            message = message.rstrip("\n")  # uvicorn ends its error message in a newline
        name = record.name
        head = self._heads.get((name, record.levelname))
        if head is None:
            head = self._head(name, record.levelname)
        line = f'{{"@timestamp": "{self._timestamp(record.created)}", {head[0]}"message": {_string(message)}, {head[1]}'
        ctx = span_context()
        if ctx is not None:
            line += f', "trace.id": "{ctx[0]:032x}", "span.id": "{ctx[1]:016x}"'
        if (
            name not in ACCESS_LOGGERS
            and len(record.__dict__) <= _PLAIN_RECORD_SIZE
            and not record.exc_info
            and not record.stack_info
        ):
            return line + "}"
        rest = self._rest(record, name, ctx is not None)
        return f"{line}, {_encode(rest)[1:]}" if rest else line + "}"

    def _line_writer(self) -> Any:
        """The C line writer for plain records, when the compiled writers are on; else None."""
        if not accel.compiled() or _core is None or not hasattr(_core, "EcsLine"):
            return None
        try:
            return _core.EcsLine(
                record_type=logging.LogRecord,
                heads=self._heads,
                escape=_string,
                span_context=span_context,
                access=ACCESS_LOGGERS,
                plain_size=_PLAIN_RECORD_SIZE,
            )
        except Exception:  # an extension that does not fit: the Python writer
            return None

    def _head(self, name: str, levelname: str) -> tuple[str, str]:
        head = (
            f'"log.level": {_string(levelname.lower())}, ',
            f'"log.logger": {_string(name)}, "service.name": {_string(self._service_name)}',
        )
        if len(self._heads) < _MAX_NAMES:
            self._heads[(name, levelname)] = head
        return head

    def _rest(self, record: logging.LogRecord, name: str, traced: bool) -> dict[str, Any]:
        """The fields after the fixed ones, in the order ``_document`` adds them."""
        rest: dict[str, Any] = {}
        if name in ACCESS_LOGGERS:
            access = access_fields(record)
            if access is not None:
                rest.update(access)
        if len(record.__dict__) > _PLAIN_RECORD_SIZE:
            fixed = _FIXED_TRACED if traced else _FIXED
            for key, value in record.__dict__.items():
                if "." in key and key not in rest and key not in fixed:
                    rest[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, tb = record.exc_info
            rest["error.type"] = exc_type.__qualname__
            rest["error.message"] = str(exc)
            rest["error.stack_trace"] = "".join(traceback.format_exception(exc_type, exc, tb))
        elif record.stack_info:
            rest["error.stack_trace"] = record.stack_info
        return rest


class TextFormatter(logging.Formatter):
    """Plain lines for humans, trace ids appended when a span is current."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = span_context()
        if ctx is not None:
            line += f" trace.id={ctx[0]:032x} span.id={ctx[1]:016x}"
        # One record, one line: newlines in user text are escaped.
        return line.replace("\r", "\\r").replace("\n", "\\n").replace("\x1b", "\\x1b")
