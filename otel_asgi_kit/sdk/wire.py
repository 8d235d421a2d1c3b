"""OTLP protobuf bytes for spans and log records, written directly.

Why: the stock encoder builds a protobuf message object for every span,
attribute and value and then serialises the tree: 49 µs per server span
in ``benchmarks/encoding.py``, on an export thread that shares the event
loop's core and its GIL. Here the wire format is written with bytes joins,
and what repeats — the resource, the instrumentation scope, keys and short
string values — is encoded once and reused: 7.6 µs per span there.

What is written is ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``
of opentelemetry-proto (``trace/v1/trace.proto``, ``logs/v1/logs.proto``,
``common/v1/common.proto``), fields in field-number order, with the same
presence rules as the stock encoder, so the bytes decode to the very message
the stock encoder builds (``tests/test_otlp_wire.py`` checks this against it
and against the proto definitions). One deliberate difference: a link's
``trace_state`` is written (the stock encoder drops it).

Values the stock encoder would refuse (an int outside int64, an unknown type)
leave out that one attribute, as the stock encoder does; strings that are not
valid UTF-8 are repaired, never fatal to the batch.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack
_VARINTS = [bytes((n,)) for n in range(128)]
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# SpanFlags: the flags field says whether the parent was remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200

# Caches of encoded KeyValues for string values and of resources/scopes;
# cleared when full so that high-cardinality values cannot grow them.
_CACHE_LIMIT = 4096


def varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _VARINTS[n]
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (_VARINTS[n] if n < 128 else varint(n)) + payload


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates: repaired, the batch still goes
        return text.encode("utf-8", "replace")


class _UnencodableError(Exception):
    """A value OTLP cannot carry; the attribute is left out."""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message body (oneof members are always written)."""
    if value is None:
        return b""
    if isinstance(value, str):
        return _delimited(b"\x0a", _utf8(value))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _UnencodableError(value)
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _delimited(b"\x3a", value)
    if isinstance(value, Sequence):
        return _delimited(b"\x2a", b"".join([_delimited(b"\x0a", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _delimited(b"\x32", b"".join([_delimited(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]))
    raise _UnencodableError(value)


def _key_value(key: str, value: Any) -> bytes:
    body = _delimited(b"\x12", _any_value(value))
    return _delimited(b"\x0a", _utf8(key)) + body if key else body


_kv_cache: dict[tuple[bytes, str, Any], bytes] = {}
_CACHED_INTS = 1024  # HTTP status codes, small counts: few values, worth one lookup


def attributes(tag: bytes, attrs: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` field ``tag`` holding ``attrs``.

    String values and small non-negative ints (status codes) are encoded once
    per (tag, key, value) and then looked up.
    """
    if not attrs:
        return b""
    parts = []
    cache = _kv_cache
    for key, value in attrs.items():
        kind = type(value)
        if kind is str or (kind is int and 0 <= value < _CACHED_INTS):
            cache_key = (tag, key, value)
            cached = cache.get(cache_key)
            if cached is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cached = cache[cache_key] = _delimited(tag, _key_value(key, value))
            parts.append(cached)
            continue
        try:
            parts.append(_delimited(tag, _key_value(key, value)))
        except _UnencodableError:
            continue
    return b"".join(parts)


class _Memo:
    """Encodings of long-lived objects (resources, scopes), keyed by identity."""

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        self._encode = encode
        self._entries: dict[int, tuple[Any, bytes]] = {}

    def __call__(self, obj: Any) -> bytes:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        if len(self._entries) >= _CACHE_LIMIT:
            self._entries.clear()
        encoded = self._encode(obj)
        self._entries[id(obj)] = (obj, encoded)  # holding obj: its id cannot be reused meanwhile
        return encoded


def _resource_field(resource: Any) -> bytes:
    """``resource`` (field 1) of ResourceSpans/ResourceLogs."""
    return _delimited(b"\x0a", attributes(b"\x0a", resource.attributes))


def _schema_url_field(schema_url: str | None) -> bytes:
    return _delimited(b"\x1a", _utf8(schema_url)) if schema_url else b""


def _scope_field(scope: Any) -> bytes:
    """``scope`` (field 1) of ScopeSpans/ScopeLogs; the stock encoder always writes it."""
    if scope is None:
        return b"\x0a\x00"
    body = b""
    if scope.name:
        body += _delimited(b"\x0a", _utf8(scope.name))
    if scope.version:
        body += _delimited(b"\x12", _utf8(scope.version))
    body += attributes(b"\x1a", scope.attributes)
    return _delimited(b"\x0a", body)


_resource_memo = _Memo(_resource_field)
_scope_memo = _Memo(_scope_field)


Grouped = dict[int, tuple[Any, dict[int, tuple[Any, list[Any]]]]]


def bucket(groups: Grouped, resource: Any, scope: Any) -> list[Any]:
    """The list of encoded items of (resource, scope) in ``groups``, made on first use."""
    by_scope = groups.get(id(resource))
    if by_scope is None:
        by_scope = groups[id(resource)] = (resource, {})
    found = by_scope[1].get(id(scope))
    if found is None:
        found = by_scope[1][id(scope)] = (scope, [])
    return found[1]


def _grouped(items: Sequence[Any], encode: Callable[[Any], bytes], owner: Callable[[Any], tuple[Any, Any]]) -> Grouped:
    groups: Grouped = {}
    for item in items:
        bucket(groups, *owner(item)).append(encode(item))
    return groups


def request(groups: Grouped) -> bytes:
    """ExportXServiceRequest: resource → scope → items, as the stock encoders group them."""
    out = []
    for resource, scopes in groups.values():
        scope_parts = []
        for scope, encoded in scopes.values():
            body = (
                _scope_memo(scope)
                + b"".join(encoded)
                + _schema_url_field(scope.schema_url if scope is not None else None)
            )
            scope_parts.append(_delimited(b"\x12", body))
        body = _resource_memo(resource) + b"".join(scope_parts) + _schema_url_field(resource.schema_url)
        out.append(_delimited(b"\x0a", body))
    return b"".join(out)


# --- traces -----------------------------------------------------------------


def _trace_state(trace_state: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in trace_state.items()) if trace_state else ""


def _event(event: Any) -> bytes:
    body = b"\x09" + _fixed64(event.timestamp)
    if event.name:
        body += _delimited(b"\x12", _utf8(event.name))
    body += attributes(b"\x1a", event.attributes)
    if event.dropped_attributes:
        body += b"\x20" + varint(event.dropped_attributes)
    return _delimited(b"\x5a", body)


def _link(link: Any) -> bytes:
    ctx = link.context
    body = b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big") + b"\x12\x08" + ctx.span_id.to_bytes(8, "big")
    state = _trace_state(ctx.trace_state)
    if state:
        body += _delimited(b"\x1a", _utf8(state))
    body += attributes(b"\x22", link.attributes)
    if link.dropped_attributes:
        body += b"\x28" + varint(link.dropped_attributes)
    body += b"\x35" + _fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if ctx.is_remote else 0))
    return _delimited(b"\x6a", body)


def _status(status: Any) -> bytes:
    if status is None:
        return b""
    body = b""
    if status.description:
        body += _delimited(b"\x12", _utf8(status.description))
    code = status.status_code.value
    if code:
        body += b"\x18" + varint(code)
    return _delimited(b"\x7a", body)


_KINDS: dict[Any, bytes] = {}
_UNSET_STATUS = b"\x7a\x00"


def _kind_field(kind: Any) -> bytes:
    """Field 6; the proto's SpanKind is the SDK's value + 1."""
    encoded = _KINDS.get(kind)
    if encoded is None:
        encoded = _KINDS[kind] = b"\x30" + varint(kind.value + 1)
    return encoded


def _contents(container: Any) -> Any:
    """The plain dict/deque inside the SDK's BoundedAttributes/BoundedList (their Python-level
    iteration costs a call per item), or the container itself."""
    inner = getattr(container, "_dict", None)
    if inner is None:
        inner = getattr(container, "_dq", None)
    return container if inner is None else inner


def _repeated(parts: list[bytes], raw: Any, encode: Callable[[Any], bytes], dropped_tag: bytes) -> None:
    """Events or links, then their dropped count (field ``dropped_tag``) when not zero."""
    items = _contents(raw)
    if items:
        parts.extend([encode(item) for item in items])
    dropped = getattr(raw, "dropped", 0)
    if dropped:
        parts.append(dropped_tag + varint(dropped))


def _has_dropped(container: Any) -> bool:
    """An empty events/links container may still count what its limit dropped (a limit of 0)."""
    return type(container) is not tuple and bool(getattr(container, "dropped", 0))


_FLAGS_LOCAL = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE)
_FLAGS_REMOTE = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE | _IS_REMOTE)


def encode_span(span: Any) -> bytes:
    """One ``Span`` (as field 2 of ScopeSpans) from an SDK ``ReadableSpan``.

    The SDK's span keeps its fields behind properties and its attributes,
    events and links in bounded containers whose public views are copies or
    Python-level iterators; the fields are read directly when present
    (``_contents``), else through the public properties.
    """
    try:
        ctx, parent, name, kind = span._context, span._parent, span._name, span._kind
        start, end, status = span._start_time, span._end_time, span._status
        raw_attributes, raw_events, raw_links = span._attributes, span._events, span._links
    except AttributeError:
        ctx, parent, name, kind = span.context, span.parent, span.name, span.kind
        start, end, status = span.start_time, span.end_time, span.status
        raw_attributes, raw_events, raw_links = span.attributes, span.events, span.links
    parts = [b"\x0a\x10", ctx.trace_id.to_bytes(16, "big"), b"\x12\x08", ctx.span_id.to_bytes(8, "big")]
    trace_state = ctx.trace_state
    if trace_state:
        parts.append(_delimited(b"\x1a", _utf8(_trace_state(trace_state))))
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if name:
        parts.append(_delimited(b"\x2a", _utf8(name)))
    parts.append(_KINDS.get(kind) or _kind_field(kind))
    if start:
        parts.append(b"\x39" + _fixed64(start))
    if end:
        parts.append(b"\x41" + _fixed64(end))
    if raw_attributes:
        parts.append(attributes(b"\x4a", _contents(raw_attributes)))
        dropped = getattr(raw_attributes, "dropped", 0)
        if dropped:
            parts.append(b"\x50" + varint(dropped))
    if raw_events or _has_dropped(raw_events):
        _repeated(parts, raw_events, _event, b"\x60")
    if raw_links or _has_dropped(raw_links):
        _repeated(parts, raw_links, _link, b"\x70")
    if status is not None:
        parts.append(_status(status) if status.status_code.value or status.description else _UNSET_STATUS)
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    body = b"".join(parts)
    n = len(body)
    return b"\x12" + (_VARINTS[n] if n < 128 else varint(n)) + body


def span_owner(span: Any) -> tuple[Any, Any]:
    return span.resource, span.instrumentation_scope


def encode_trace_request(spans: Sequence[Any]) -> bytes:
    """``ExportTraceServiceRequest`` bytes for SDK ``ReadableSpan``s."""
    return request(_grouped(spans, encode_span, span_owner))
