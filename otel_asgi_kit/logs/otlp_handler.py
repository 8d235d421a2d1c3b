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
processor of the provider sees it as before — unless the provider's only
processor is the kit's ``EncodingLogRecordProcessor`` (nobody else would
see the SDK's record): then the record's fields are encoded straight into
OTLP bytes (``wire_logs.encode_log_fields``, the writer the exporter uses
for SDK records too) and queued, without the SDK ``LogRecord``, its
attribute copy and the processor chain. The provider's processor list is
checked on every record (one identity comparison), so a processor added
later gets every record after it. The direct path needs the SDK's private
``_multi_log_record_processor._log_record_processors`` and
``Logger._is_enabled``; without them, or with attribute limits that need
truncation, the SDK's path runs.

With the compiled writers on (``sdk.accel``), a plain record (no ``extra=``
fields, no exception, not an access log, no formatter on this handler, no
filter added to it) takes the direct path in C
(``otel_asgi_kit_accel._core.LogDirect``, built per processor tuple): the
same fields, the same bytes (``tests/test_log_direct.py`` compares them), queued
as the batch processor's ``emit`` queues them. Whatever it does not take,
the Python code here takes.

The exporters' own loggers (``quiet``: the OTLP exporter's warnings, urllib3)
are skipped before anything else: what a failing pipeline logs must not feed
back into it.
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
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.logs.access import ACCESS_LOGGERS, access_fields
from otel_asgi_kit.sdk import accel, current, wire_logs
from otel_asgi_kit.sdk.encoded import GROUPS, EncodingLogRecordProcessor, _queue_of

try:
    from otel_asgi_kit_accel import _core
except ImportError:  # not installed
    _core = None  # type: ignore[assignment]

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
_UNTRACED = (0, 0, 0)


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


def _report_emit_failure(exc: Exception) -> None:
    report_once("exporting a log record", exc)


def _processors(provider: LoggerProvider) -> Any:
    """The provider's processor tuple (replaced, not mutated, when one is added), or None."""
    return getattr(getattr(provider, "_multi_log_record_processor", None), "_log_record_processors", None)


class OtlpLogHandler(logging.Handler):
    _emitting: ContextVar[bool] = ContextVar("otel_asgi_kit_log_emitting", default=False)

    def __init__(self, logger_provider: LoggerProvider, quiet: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._provider = logger_provider
        self._quiet = quiet
        self._loggers: dict[str, Any] = {}
        self._names: dict[str, tuple[Any, Any, bytes]] = {}
        self._levels: dict[int, tuple[str, int, str]] = {}
        self._severities: dict[int, SeverityNumber] = {}
        limits = LogRecordLimits()
        self._max_attributes = limits.max_log_record_attributes
        self._direct_ok = limits.max_log_record_attribute_length is None
        # (the processor tuple the direct path was decided for, the queue's emit or None, the compiled direct
        # path or None): one attribute, replaced whole, so a thread never pairs one tuple with another's decision.
        self._direct_state: tuple[Any, Any, Any] = (None, None, None)
        self._direct()

    def _logger(self, name: str) -> Any:
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._provider.get_logger(name)
            if len(self._loggers) < _MAX_LOGGERS:
                self._loggers[name] = logger
        return logger

    def _direct(self) -> Any:
        """The kit processor's queue ``emit`` while it is the provider's only processor, else None."""
        processors = _processors(self._provider)
        state = self._direct_state
        if processors is not state[0]:
            only = processors[0] if self._direct_ok and type(processors) is tuple and len(processors) == 1 else None
            emit = only._emit if isinstance(only, EncodingLogRecordProcessor) else None
            state = (processors, emit, self._compiled(processors, only) if emit is not None else None)
            self._direct_state = state
        return state[1]

    def _compiled(self, processors: tuple[Any, ...], only: Any) -> Any:
        """The direct path in C for this processor tuple, when the compiled writers are on; else None."""
        writer = accel.compiled_log_writer()
        multi = getattr(self._provider, "_multi_log_record_processor", None)
        if (
            writer is None
            or _core is None
            or not hasattr(_core, "LogDirect")
            or vars(self._provider).get("_resource", self) is not self._provider.resource
        ):
            return None
        try:
            return _core.LogDirect(
                record_type=logging.LogRecord,
                handler=self,
                multi=multi,
                processors=processors,
                provider=self._provider,
                names=self._names,
                levels=self._levels,
                access=ACCESS_LOGGERS,
                emitting=self._emitting,
                span_context=current.span_context,
                encode=writer,
                encode_python=wire_logs.encode_log_fields,
                time_ns=time_ns,
                batch=_queue_of(only),
                emit=only._emit,
                report=_report_emit_failure,
                plain_size=_PLAIN_SIZE,
            )
        except Exception as exc:  # an extension that does not fit: the Python direct path
            report_once("setting up the compiled log path", exc)
            return None

    def handle(self, record: logging.LogRecord) -> Any:
        """``Handler.handle`` without the handler's lock: ``emit`` keeps no state another thread could
        see half-written (its caches are single dict stores, the direct path's decision is one
        attribute) and the queue's append is atomic."""
        if record.name.startswith(self._quiet):
            return False
        rv: Any = True
        if self.filters:
            rv = self.filter(record)
            if not rv:
                return rv
            if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a replacement
                record = rv
        else:
            compiled = self._direct_state[2]
            if compiled is not None:
                done = compiled(record)
                if done is not None:
                    return done
        self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        # What the SDK's internals log while a record is emitted must not come back here.
        if self._emitting.get():
            return
        token = self._emitting.set(True)
        try:
            logger = self._logger(record.name)
            direct = self._direct()
            if direct is None or not self._emit_direct(record, logger, direct):
                logger.emit(self._translate(record))
        except Exception as exc:  # a log line must never break the app
            report_once("exporting a log record", exc)
        finally:
            self._emitting.reset(token)

    def _emit_direct(self, record: logging.LogRecord, logger: Any, emit: Any) -> bool:
        """Queue the record's encoding; False when the SDK's path must take it."""
        name = record.name
        known = self._names.get(name)
        resource = self._provider.resource
        if known is None or known[1] is not resource:
            known = self._learn(name, logger, resource)
            if known is None:
                return False
        enabled, _, prefix = known
        if not enabled():
            return True  # disabled by the provider's configurator: the SDK would drop it too
        if len(record.__dict__) <= _PLAIN_SIZE and not record.exc_info and name not in ACCESS_LOGGERS:
            attributes: dict[str, Any] | None = None
            event_name = None
        else:
            attributes, event_name = self._attributes(record)
            limit = self._max_attributes
            if attributes and limit is not None and len(attributes) > limit:
                return False  # the SDK's limit decides what is dropped
        level = self._levels.get(record.levelno)
        if level is None or level[0] != record.levelname:
            level = self._level(record.levelno, record.levelname)
        ctx = current.span_context()  # SpanContext: (trace_id, span_id, remote, flags, ...)
        trace_id, span_id, flags = (ctx[0], ctx[1], int(ctx[3])) if ctx is not None else _UNTRACED
        emit(
            prefix
            + accel.encode_log_fields(
                int(record.created * 1e9),
                level[1],
                level[2],
                self.format(record) if self.formatter else record.getMessage(),
                attributes,
                0,
                flags,
                trace_id,
                span_id,
                time_ns(),
                event_name,
            )
        )
        return True

    def _learn(self, name: str, logger: Any, resource: Any) -> tuple[Any, Any, bytes] | None:
        """What the direct path needs per logger name: its SDK logger's switch, the resource, the group prefix."""
        enabled = getattr(logger, "_is_enabled", None)
        prefix = GROUPS.prefix(resource, InstrumentationScope(name)) if enabled is not None else None
        if enabled is None or prefix is None:
            return None
        known = (enabled, resource, prefix)
        if len(self._names) < _MAX_LOGGERS:
            self._names[name] = known
        return known

    def _level(self, levelno: int, levelname: str) -> tuple[str, int, str]:
        level = (levelname, self._severity(levelno).value, _SEVERITY_TEXT.get(levelname, levelname))
        self._levels[levelno] = level
        return level

    def _severity(self, levelno: int) -> SeverityNumber:
        severity = self._severities.get(levelno)
        if severity is None:
            severity = self._severities[levelno] = std_to_otel(levelno)
        return severity

    def _attributes(self, record: logging.LogRecord) -> tuple[dict[str, Any], str | None]:
        """The record's OTel attributes (``extra=`` fields, access-log fields, ``exception.*``) and event name."""
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
        return attributes, event_name

    def _translate(self, record: logging.LogRecord) -> LogRecord:
        attributes, event_name = self._attributes(record)
        return LogRecord(
            timestamp=int(record.created * 1e9),
            observed_timestamp=time_ns(),
            context=get_current() or None,
            severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
            severity_number=self._severity(record.levelno),
            body=self.format(record) if self.formatter else record.getMessage(),
            attributes=attributes,
            event_name=event_name,
        )
