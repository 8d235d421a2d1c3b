"""Python ``logging`` records into the OpenTelemetry logs pipeline, with less work per record.

``OtlpLogHandler`` turns each record into the same OTel log record as
opentelemetry-instrumentation-logging's ``LoggingHandler``. That covers the
body, severity number and text, timestamps, trace context, ``extra=`` fields
as attributes, ``exception.*`` attributes and ``otel.event.name``. The work
that used to be repeated per record is done once or skipped:

* the SDK logger is cached per logger name;
* the record's attributes are scanned only when it carries ``extra=`` fields;
* severities are mapped once per level.

The record is then emitted to the SDK ``Logger``, so every log record
processor of the provider sees it as before.

The batch processor that follows is ``otel_asgi_kit.sdk.log_processor``.
"""

from __future__ import annotations

import logging
import traceback
from contextvars import ContextVar
from time import time_ns
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import get_current
from opentelemetry.instrumentation.log_utils import std_to_otel
from opentelemetry.sdk._logs import LoggerProvider

from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.logs.access import ACCESS_LOGGERS, access_fields

_PLAIN = vars(logging.LogRecord("", 0, "", 0, "", (), None))
# A record's own fields (and what formatters add) are not attributes; extra= fields are.
_RESERVED = frozenset(_PLAIN) | {"message", "asctime", "taskName", "getMessage"}
_PLAIN_SIZE = len(_PLAIN)
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_EVENT_NAME = "otel.event.name"
_EVENT_NAME_DEPRECATED = "event.name"
_MAX_LOGGERS = 1024
_PRIMITIVE = frozenset({str, int, float, bool, bytes, type(None)})
_MAX_DEPTH = 4


def _attribute_value(value: Any, depth: int) -> Any:
    """An OTel attribute value for an ``extra=`` value: objects (Django puts its request there) become ``str``.

    The SDK would convert them too, but with a warning per record on stderr.
    """
    if isinstance(value, (str, int, float, bytes)):  # incl. subclasses such as enums
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple)):
            return [v if type(v) in _PRIMITIVE else _attribute_value(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {
                str(k): v if type(v) in _PRIMITIVE else _attribute_value(v, depth + 1)
                for k, v in value.items()
                if k != ""
            }
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


class OtlpLogHandler(logging.Handler):
    _emitting: ContextVar[bool] = ContextVar("otel_asgi_kit_log_emitting", default=False)

    def __init__(self, logger_provider: LoggerProvider) -> None:
        super().__init__()
        self._provider = logger_provider
        self._loggers: dict[str, Any] = {}
        self._severities: dict[int, SeverityNumber] = {}

    def _logger(self, name: str) -> Any:
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._provider.get_logger(name)
            if len(self._loggers) < _MAX_LOGGERS:
                self._loggers[name] = logger
        return logger

    def emit(self, record: logging.LogRecord) -> None:
        # What the SDK's internals log while a record is emitted must not come back here.
        if self._emitting.get():
            return
        token = self._emitting.set(True)
        try:
            self._logger(record.name).emit(self._translate(record))
        except Exception as exc:  # a log line must never break the app
            report_once("exporting a log record", exc)
        finally:
            self._emitting.reset(token)

    def _translate(self, record: logging.LogRecord) -> LogRecord:
        fields = record.__dict__
        attributes: dict[str, Any] = {}
        event_name = None
        if len(fields) > _PLAIN_SIZE:
            attributes = {
                k: v if type(v) in _PRIMITIVE else _attribute_value(v, 0)
                for k, v in fields.items()
                if k not in _RESERVED
            }
            event_name = attributes.pop(_EVENT_NAME, None)
            deprecated = attributes.pop(_EVENT_NAME_DEPRECATED, None)
            if event_name is None:
                event_name = deprecated
        if record.name in ACCESS_LOGGERS:
            access = access_fields(record)
            if access is not None:
                attributes = {**attributes, **access}
        if record.exc_info:
            exc_type, exc, tb = record.exc_info
            if exc_type is not None:
                attributes["exception.type"] = exc_type.__name__
            if exc is not None and exc.args:
                attributes["exception.message"] = str(exc.args[0])
            if tb is not None:
                attributes["exception.stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
        levelno = record.levelno
        severity = self._severities.get(levelno)
        if severity is None:
            severity = self._severities[levelno] = std_to_otel(levelno)
        return LogRecord(
            timestamp=int(record.created * 1e9),
            observed_timestamp=time_ns(),
            context=get_current() or None,
            severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
            severity_number=severity,
            body=self.format(record) if self.formatter else record.getMessage(),
            attributes=attributes,
            event_name=event_name,
        )
