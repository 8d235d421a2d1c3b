"""OTLP protobuf bytes for log records, written directly (see ``wire`` for the why and the rules).

Two entry points share one writer, so their bytes cannot differ:
``encode_log_record`` for an SDK ``ReadableLogRecord`` (what the exporter is
handed on the SDK's path) and ``encode_log_fields`` for the fields the kit's
logging handler has at hand (its direct path, see ``logs.otlp_handler``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_asgi_kit.sdk.wire import (
    _VARINTS,
    _any_value,
    _contents,
    _delimited,
    _fixed32,
    _fixed64,
    _grouped,
    _UnencodableError,
    _utf8,
    attributes,
    request,
    varint,
)

_SEVERITY_TEXTS: dict[str, bytes] = {}


def encode_log_fields(
    timestamp: int | None,
    severity: int | None,
    severity_text: str | None,
    body: Any,
    attrs: Mapping[str, Any] | None,
    dropped: int,
    flags: int,
    trace_id: int,
    span_id: int,
    observed_timestamp: int | None,
    event_name: str | None,
) -> bytes:
    """One ``LogRecord`` (as field 2 of ScopeLogs), fields in field-number order."""
    parts = []
    if timestamp:
        parts.append(b"\x09" + _fixed64(timestamp))
    if severity:
        parts.append(b"\x10" + varint(severity))
    if severity_text:
        encoded = _SEVERITY_TEXTS.get(severity_text)
        if encoded is None:
            encoded = _delimited(b"\x1a", _utf8(severity_text))
            if len(_SEVERITY_TEXTS) < 64:
                _SEVERITY_TEXTS[severity_text] = encoded
        parts.append(encoded)
    if type(body) is str:
        value = _delimited(b"\x0a", _utf8(body))
    else:
        try:
            value = _any_value(body)
        except _UnencodableError:
            value = _any_value(str(body))
    parts.append(_delimited(b"\x2a", value))
    if attrs:
        parts.append(attributes(b"\x32", attrs))
    if dropped:
        parts.append(b"\x38" + varint(dropped))
    if flags:
        parts.append(b"\x45" + _fixed32(flags))
    if trace_id:
        parts.append(b"\x4a\x10" + trace_id.to_bytes(16, "big"))
    if span_id:
        parts.append(b"\x52\x08" + span_id.to_bytes(8, "big"))
    if observed_timestamp:
        parts.append(b"\x59" + _fixed64(observed_timestamp))
    if event_name:
        parts.append(_delimited(b"\x62", _utf8(event_name)))
    body_bytes = b"".join(parts)
    n = len(body_bytes)
    return b"\x12" + (_VARINTS[n] if n < 128 else varint(n)) + body_bytes


def encode_log_record(readable: Any, write: Callable[..., bytes] | None = None) -> bytes:
    """One ``LogRecord`` (as field 2 of ScopeLogs) from an SDK ``ReadableLogRecord``, written by
    ``write`` (``encode_log_fields`` or the compiled writer of ``sdk.accel``)."""
    record = readable.log_record
    return (write or encode_log_fields)(
        record.timestamp,
        getattr(record.severity_number, "value", None),
        record.severity_text,
        record.body,
        _contents(record.attributes) if record.attributes else None,
        readable.dropped_attributes,
        int(record.trace_flags or 0),
        record.trace_id or 0,
        record.span_id or 0,
        record.observed_timestamp,
        record.event_name,
    )


def log_owner(readable: Any) -> tuple[Any, Any]:
    return readable.resource, readable.instrumentation_scope


def encode_logs_request(records: Sequence[Any]) -> bytes:
    """``ExportLogsServiceRequest`` bytes for SDK ``ReadableLogRecord``s."""
    return request(_grouped(records, encode_log_record, log_owner))
